//! Arbitrary bytes as a datagram on the LAN's LSD group (BEP 14). What parses must encode
//! to a datagram that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::lsd::LsdAnnounce;

fuzz_target!(|data: &[u8]| {
    if let Ok(announce) = LsdAnnounce::parse(data) {
        assert!(!announce.info_hashes.is_empty() && announce.port != 0);
        assert_eq!(LsdAnnounce::parse(&announce.encode()).as_ref(), Ok(&announce));
    }
});
