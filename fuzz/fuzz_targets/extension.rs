//! Arbitrary bytes as the payload of an extension message (BEP 10): the extended handshake,
//! peer exchange (BEP 11) and the metadata exchange (BEP 9), the first byte choosing which.
//! What decodes must encode back to itself where the encoding is ours.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shoal_proto::extension::{ExtendedHandshake, MetadataMessage, PexMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            let _ = ExtendedHandshake::decode(payload);
        }
        1 => {
            if let Ok(pex) = PexMessage::decode(payload) {
                assert!(pex.added.len() == pex.added_flags.len());
                assert_eq!(PexMessage::decode(&pex.encode()).as_ref(), Ok(&pex));
            }
        }
        _ => {
            let _ = MetadataMessage::decode(&Bytes::copy_from_slice(payload));
        }
    }
});
