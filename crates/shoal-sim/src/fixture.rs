//! Torrents for scenarios: pseudo-random content of a chosen size, cut into pieces and turned
//! into a real `.torrent` with the core's own [`TorrentBuilder`], so the simulated nodes parse
//! and verify exactly what a real client would.

use bytes::Bytes;
use shoal_proto::create::{CreateError, TorrentBuilder};
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::{Metainfo, MetainfoError};
use shoal_proto::InfoHash;

use crate::rng::SimRng;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot create the test torrent: {0}")]
    Create(CreateError),
    #[error("the created torrent does not parse: {0}")]
    Parse(MetainfoError),
}

/// Content plus the torrent describing it.
#[derive(Clone, Debug)]
pub struct TestTorrent {
    /// The whole content; seeders serve zero-copy slices of it.
    pub content: Bytes,
    pub metainfo: Metainfo,
    /// The info dictionary as a node made from a `.torrent` receives it.
    pub info_bytes: Bytes,
}

impl TestTorrent {
    /// `len` bytes from a generator seeded with `seed`, in pieces of `piece_length` (a power of
    /// two of at least 16 KiB; the last piece may be shorter).
    pub fn random(seed: u64, len: u64, piece_length: u32) -> Result<TestTorrent, FixtureError> {
        let mut content = vec![0u8; len as usize];
        SimRng::new(seed).fill(&mut content);
        TestTorrent::from_content(Bytes::from(content), piece_length)
    }

    pub fn from_content(content: Bytes, piece_length: u32) -> Result<TestTorrent, FixtureError> {
        let mut hasher = TorrentBuilder::single_file("shoal-sim.bin", content.len() as u64)
            .map_err(FixtureError::Create)?
            .piece_length(piece_length)
            .start()
            .map_err(FixtureError::Create)?;
        hasher.update(&content).map_err(FixtureError::Create)?;
        let torrent = hasher.finish().map_err(FixtureError::Create)?;
        let metainfo = Metainfo::from_bytes(&torrent).map_err(FixtureError::Parse)?;
        let info_bytes = Bytes::from(metainfo.info_bytes.clone());
        Ok(TestTorrent { content, metainfo, info_bytes })
    }

    pub fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash
    }

    pub fn magnet(&self) -> Magnet {
        self.metainfo.to_magnet()
    }

    pub fn len(&self) -> u64 {
        self.content.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.content.is_empty()
    }

    pub fn piece_count(&self) -> u32 {
        self.metainfo.info.piece_count()
    }

    /// The bytes of piece `index` (empty past the end).
    pub fn piece(&self, index: u32) -> Bytes {
        let range = self.metainfo.info.piece_range(index);
        self.content.slice(range.start as usize..range.end as usize)
    }
}
