//! Arbitrary text as a magnet link. An accepted link must round-trip through `to_uri`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::magnet::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Most random inputs lack the scheme; give half of them one so the parameter parser runs.
    let with_scheme;
    let text = if data.first().is_some_and(|b| b & 1 == 1) {
        with_scheme = format!("magnet:?{text}");
        with_scheme.as_str()
    } else {
        text
    };
    let Ok(magnet) = Magnet::parse(text) else { return };
    let uri = magnet.to_uri();
    assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&magnet), "{uri}");
});
