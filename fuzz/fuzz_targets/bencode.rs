//! Arbitrary bytes into the strict bencode decoder. Whatever it accepts must re-encode to the
//! exact same bytes: strict decoding means there is one encoding per value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::bencode;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = bencode::decode(data) {
        assert_eq!(value.encode(), data);
    }
    if let Ok((value, used)) = bencode::decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(value.encode(), &data[..used]);
    }
});
