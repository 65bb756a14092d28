//! Arbitrary bytes as a `.torrent`. An accepted torrent must be internally consistent, and
//! survive a save/parse round trip and a magnet round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::magnet::{Magnet, MagnetError};
use shoal_proto::metainfo::{Info, Metainfo};

fuzz_target!(|data: &[u8]| {
    let _ = Info::from_bytes(data);
    let Ok(m) = Metainfo::from_bytes(data) else { return };
    let info = &m.info;
    assert!(info.total_length > 0);
    let mut offset = 0;
    for file in &info.files {
        assert_eq!(file.offset, offset);
        offset += file.length;
        assert!(!file.path.is_empty());
    }
    assert_eq!(offset, info.total_length);
    let piece_bytes: u64 = (0..info.piece_count()).map(|i| u64::from(info.piece_len(i))).sum();
    assert_eq!(piece_bytes, info.total_length);
    let covered: u64 = info.file_slices(0..info.total_length).map(|(_, r)| r.end - r.start).sum();
    assert_eq!(covered, info.total_length);

    let again = Metainfo::from_bytes(&m.to_torrent_bytes()).expect("saved torrent re-parses");
    assert_eq!(again.info_hash, m.info_hash);
    assert_eq!(again.info, m.info);
    // A torrent may list more trackers than a magnet link can carry; anything else must parse.
    match Magnet::parse(&m.magnet_uri()) {
        Ok(magnet) => assert_eq!(magnet.info_hash, m.info_hash),
        Err(MagnetError::TooLong(_) | MagnetError::TooManyParams) => {}
        Err(e) => panic!("own magnet does not parse: {e}"),
    }
});
