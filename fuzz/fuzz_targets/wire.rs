//! Arbitrary bytes as a peer's stream, fed to the frame decoder in chunks whose sizes come
//! from the input. Every decoded message must encode back to a frame that decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_proto::wire::{FrameDecoder, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => check_round_trip(&message),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

fn check_round_trip(message: &Message) {
    if matches!(message, Message::Unknown { .. }) {
        return; // its payload was skipped, so it cannot encode to what came in
    }
    let mut out = BytesMut::new();
    message.encode(&mut out);
    assert_eq!(out.len(), message.encoded_len());
    let again = FrameDecoder::new(1 << 20).decode(&mut out).expect("own frame decodes");
    assert_eq!(again.as_ref(), Some(message));
    assert!(out.is_empty());
}
