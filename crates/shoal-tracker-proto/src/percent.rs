//! Percent-encoding of binary query values: the shared implementation in `shoal_proto`, with
//! HTML form rules (`+` is a space) for decoding HTTP queries.

pub use shoal_proto::percent::{encode, encode_into, PercentError};

/// Decodes an HTTP query value; `+` means a space, as common HTTP libraries write it.
pub fn decode(text: &str) -> Result<Vec<u8>, PercentError> {
    shoal_proto::percent::decode(text, shoal_proto::percent::Plus::Space)
}
