//! Creating `.torrent` files, sans-IO: the caller describes the files, then feeds their bytes
//! in the same order; we hash pieces as the bytes go by and write the bencoded torrent.
//!
//! ```text
//! let mut builder = TorrentBuilder::multi_file("album")?;
//! builder.add_file(vec!["01.flac".into()], len)?;       // in the order bytes will come
//! let mut hasher = builder.trackers(tiers).start()?;     // checks the layout, picks a piece size
//! hasher.update(&bytes)?;                                // as often as needed
//! let torrent: Vec<u8> = hasher.finish()?;
//! ```
//!
//! The file order is the caller's: the CLI sorts paths so the output is deterministic. We never
//! emit anything [`crate::metainfo::Metainfo::from_bytes`] would refuse.

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::Encoder;
use crate::metainfo::{
    path_component_problem, MAX_FILES, MAX_PATH_DEPTH, MAX_PIECES, MAX_PIECE_LENGTH,
    MAX_TOTAL_LENGTH,
};
use crate::piece_sizes::PieceSizes;

/// Smallest piece length we pick or accept: the BitTorrent block size, below which other
/// clients refuse a torrent.
pub const MIN_PIECE_LENGTH: u32 = 16 << 10;
/// Largest piece length [`auto_piece_length`] picks.
pub const MAX_AUTO_PIECE_LENGTH: u32 = 16 << 20;
/// [`auto_piece_length`] aims for at most this many pieces (and so at least half as many).
const TARGET_MAX_PIECES: u64 = 2000;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CreateError {
    #[error("unusable name {component:?}: {reason}")]
    UnsafeName { component: String, reason: &'static str },
    #[error("piece length {0} must be a power of two between 16 KiB and 256 MiB")]
    BadPieceLength(u32),
    #[error("a file path is empty")]
    EmptyPath,
    #[error("file path {0:?} is deeper than {MAX_PATH_DEPTH} levels")]
    PathTooDeep(String),
    #[error("more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("two files share the path {0:?}")]
    DuplicatePath(String),
    #[error("a single-file torrent has no file list to add to")]
    NotMultiFile,
    #[error("nothing to share: the total size is 0 bytes")]
    Empty,
    #[error("the total size is more than 2^53 bytes")]
    TooLarge,
    #[error("{0} pieces is more than the limit of {MAX_PIECES}; choose a larger piece size")]
    TooManyPieces(u64),
    #[error("content was {fed} bytes but the files add up to {declared}")]
    LengthMismatch { fed: u64, declared: u64 },
    #[error("{given} piece hashes for a layout of {expected} pieces")]
    PieceHashCount { given: usize, expected: u64 },
}

/// A power of two between 16 KiB and 16 MiB giving at most 2000 pieces (so between 1000 and
/// 2000 for mid-sized content): fewer pieces mean a smaller torrent and fewer `have`
/// messages, more pieces mean finer-grained sharing and less waste on a bad piece.
pub fn auto_piece_length(total: u64) -> u32 {
    let too_many = |piece| PieceSizes::new(piece, total).count() > TARGET_MAX_PIECES;
    let mut piece = MIN_PIECE_LENGTH;
    while piece < MAX_AUTO_PIECE_LENGTH && too_many(piece) {
        piece *= 2;
    }
    piece
}

/// The torrent's shape and descriptive fields, before any content is hashed.
#[derive(Clone, Debug)]
pub struct TorrentBuilder {
    name: String,
    /// `None`: single file (`info.length`); `Some`: the `info.files` list.
    files: Option<Vec<(Vec<String>, u64)>>,
    single_length: u64,
    piece_length: Option<u32>,
    trackers: Vec<Vec<String>>,
    web_seeds: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    private: bool,
}

impl TorrentBuilder {
    /// A torrent of one file called `name`.
    pub fn single_file(name: &str, length: u64) -> Result<Self, CreateError> {
        check_name(name)?;
        Ok(Self::empty(name, None, length))
    }

    /// A torrent of a folder called `name`; add its files with [`TorrentBuilder::add_file`].
    pub fn multi_file(name: &str) -> Result<Self, CreateError> {
        check_name(name)?;
        Ok(Self::empty(name, Some(Vec::new()), 0))
    }

    fn empty(name: &str, files: Option<Vec<(Vec<String>, u64)>>, single_length: u64) -> Self {
        TorrentBuilder {
            name: name.to_owned(),
            files,
            single_length,
            piece_length: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            private: false,
        }
    }

    /// Adds a file, `path` relative to the folder, in the order its bytes will be fed.
    pub fn add_file(&mut self, path: Vec<String>, length: u64) -> Result<(), CreateError> {
        let files = self.files.as_mut().ok_or(CreateError::NotMultiFile)?;
        if files.len() >= MAX_FILES {
            return Err(CreateError::TooManyFiles);
        }
        if path.is_empty() {
            return Err(CreateError::EmptyPath);
        }
        if path.len() > MAX_PATH_DEPTH {
            return Err(CreateError::PathTooDeep(path.join("/")));
        }
        for component in &path {
            check_name(component)?;
        }
        files.push((path, length));
        Ok(())
    }

    /// A fixed piece length instead of [`auto_piece_length`].
    pub fn piece_length(mut self, piece_length: u32) -> Self {
        self.piece_length = Some(piece_length);
        self
    }

    /// Tracker tiers: `announce` gets the first URL, `announce-list` all tiers.
    pub fn trackers(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.trackers = tiers.into_iter().filter(|t| !t.is_empty()).collect();
        self
    }

    /// BEP 19 web seeds (`url-list`).
    pub fn web_seeds(mut self, urls: Vec<String>) -> Self {
        self.web_seeds = urls;
        self
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    pub fn created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    /// Seconds since the Unix epoch (the core has no clock: the caller reads it).
    pub fn creation_date(mut self, seconds: i64) -> Self {
        self.creation_date = Some(seconds);
        self
    }

    /// BEP 27: clients should use only the torrent's trackers, not DHT or PEX.
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Sum of the file lengths.
    pub fn total_length(&self) -> u64 {
        match &self.files {
            None => self.single_length,
            Some(files) => files.iter().fold(0u64, |sum, f| sum.saturating_add(f.1)),
        }
    }

    /// Checks the layout and starts hashing.
    pub fn start(self) -> Result<TorrentHasher, CreateError> {
        let total = self.total_length();
        if total == 0 {
            return Err(CreateError::Empty);
        }
        if total > MAX_TOTAL_LENGTH {
            return Err(CreateError::TooLarge);
        }
        if let Some(files) = &self.files {
            check_unique(files)?;
        }
        let piece_length = self.piece_length.unwrap_or_else(|| auto_piece_length(total));
        if !piece_length.is_power_of_two()
            || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
        {
            return Err(CreateError::BadPieceLength(piece_length));
        }
        let pieces = PieceSizes::new(piece_length, total).count();
        if pieces > u64::from(MAX_PIECES) {
            return Err(CreateError::TooManyPieces(pieces));
        }
        Ok(TorrentHasher {
            total,
            piece_length,
            fed: 0,
            in_piece: 0,
            piece: Sha1::new(),
            hashes: Vec::with_capacity(pieces as usize * 20),
            builder: self,
        })
    }
}

/// Hashes content fed in file order, then writes the torrent.
pub struct TorrentHasher {
    builder: TorrentBuilder,
    total: u64,
    piece_length: u32,
    fed: u64,
    /// Bytes of the current piece hashed so far.
    in_piece: u32,
    piece: Sha1,
    /// Concatenated SHA-1 hashes of finished pieces (`info.pieces`).
    hashes: Vec<u8>,
}

impl TorrentHasher {
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total
    }

    /// Feeds the next bytes of content. Feeding more than the files declare is an error.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), CreateError> {
        let fed = self.fed.saturating_add(data.len() as u64);
        if fed > self.total {
            return Err(CreateError::LengthMismatch { fed, declared: self.total });
        }
        self.fed = fed;
        while !data.is_empty() {
            let room = (self.piece_length - self.in_piece) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.piece.update(now);
            self.in_piece += now.len() as u32;
            if self.in_piece == self.piece_length {
                self.hashes.extend_from_slice(&self.piece.finalize_reset());
                self.in_piece = 0;
            }
            data = rest;
        }
        Ok(())
    }

    /// Pieces of the layout (the last may be short).
    pub fn piece_count(&self) -> u64 {
        PieceSizes::new(self.piece_length, self.total).count()
    }

    /// The bencoded torrent for piece hashes computed elsewhere, one per piece in order,
    /// instead of content fed here (a browser hashes with SubtleCrypto, off its main thread).
    pub fn finish_with_hashes(mut self, hashes: &[[u8; 20]]) -> Result<Vec<u8>, CreateError> {
        if self.fed != 0 {
            return Err(CreateError::LengthMismatch { fed: self.fed, declared: 0 });
        }
        let expected = self.piece_count();
        if hashes.len() as u64 != expected {
            return Err(CreateError::PieceHashCount { given: hashes.len(), expected });
        }
        self.hashes = hashes.concat();
        Ok(self.encode())
    }

    /// The bencoded torrent, keys sorted. Fails if fewer bytes were fed than declared.
    pub fn finish(mut self) -> Result<Vec<u8>, CreateError> {
        if self.fed != self.total {
            return Err(CreateError::LengthMismatch { fed: self.fed, declared: self.total });
        }
        if self.in_piece > 0 {
            self.hashes.extend_from_slice(&self.piece.finalize_reset());
        }
        Ok(self.encode())
    }

    fn encode(&self) -> Vec<u8> {
        let b = &self.builder;
        let mut enc = Encoder::new();
        enc.begin_dict();
        let urls: Vec<&String> = b.trackers.iter().flatten().collect();
        if let Some(first) = urls.first() {
            enc.key(b"announce").str(first);
        }
        if urls.len() > 1 {
            enc.key(b"announce-list").begin_list();
            for tier in &b.trackers {
                enc.begin_list();
                for url in tier {
                    enc.str(url);
                }
                enc.end();
            }
            enc.end();
        }
        if let Some(comment) = &b.comment {
            enc.key(b"comment").str(comment);
        }
        if let Some(created_by) = &b.created_by {
            enc.key(b"created by").str(created_by);
        }
        if let Some(date) = b.creation_date {
            enc.key(b"creation date").int(date);
        }
        enc.key(b"info").begin_dict();
        match &b.files {
            Some(files) => {
                enc.key(b"files").begin_list();
                for (path, length) in files {
                    // Lengths are bounded by MAX_TOTAL_LENGTH (2^53) in start().
                    enc.begin_dict().key(b"length").int(*length as i64);
                    enc.key(b"path").begin_list();
                    for component in path {
                        enc.str(component);
                    }
                    enc.end().end();
                }
                enc.end();
            }
            None => {
                enc.key(b"length").int(b.single_length as i64);
            }
        }
        enc.key(b"name").str(&b.name);
        enc.key(b"piece length").int(i64::from(self.piece_length));
        enc.key(b"pieces").bytes(&self.hashes);
        if b.private {
            enc.key(b"private").int(1);
        }
        enc.end();
        if !b.web_seeds.is_empty() {
            enc.key(b"url-list").begin_list();
            for url in &b.web_seeds {
                enc.str(url);
            }
            enc.end();
        }
        enc.end();
        enc.finish()
    }
}

fn check_name(component: &str) -> Result<(), CreateError> {
    match path_component_problem(component) {
        None => Ok(()),
        Some(reason) => {
            Err(CreateError::UnsafeName { component: component.chars().take(64).collect(), reason })
        }
    }
}

/// Same rule as the parser: no two files may share a path, nor may one be a folder of another.
fn check_unique(files: &[(Vec<String>, u64)]) -> Result<(), CreateError> {
    let mut paths: Vec<&[String]> = files.iter().map(|f| f.0.as_slice()).collect();
    paths.sort_unstable();
    for pair in paths.windows(2) {
        if let [a, b] = pair {
            if b.starts_with(a) {
                return Err(CreateError::DuplicatePath(a.join("/")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    #[test]
    fn auto_piece_length_is_sensible() {
        assert_eq!(auto_piece_length(0), 16 << 10);
        assert_eq!(auto_piece_length(1), 16 << 10);
        assert_eq!(auto_piece_length(100 << 20), 64 << 10);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(1 << 40), 16 << 20);
        for total in [50u64 << 20, 700 << 20, 4 << 30, 20 << 30] {
            let pieces = PieceSizes::new(auto_piece_length(total), total).count();
            assert!((1000..=2000).contains(&pieces), "{total}: {pieces}");
        }
    }

    #[test]
    fn single_file_hashes_each_piece() {
        let content: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut hasher = TorrentBuilder::single_file("f.bin", content.len() as u64)
            .unwrap()
            .trackers(vec![vec!["http://t/a".into()], vec!["udp://u:1".into()]])
            .web_seeds(vec!["http://ws/".into()])
            .comment("c")
            .created_by("shoal")
            .creation_date(1_700_000_000)
            .private(true)
            .start()
            .unwrap();
        // Odd-sized chunks cross piece boundaries.
        for chunk in content.chunks(999) {
            hasher.update(chunk).unwrap();
        }
        let m = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
        assert!(!m.info.multi_file && m.info.private);
        assert_eq!(m.info.piece_length, 16384);
        assert_eq!(m.info.piece_count(), 3);
        for (i, chunk) in content.chunks(16384).enumerate() {
            assert_eq!(&m.info.piece_hashes[i], Sha1::digest(chunk).as_slice());
        }
        assert_eq!(m.trackers, vec![vec!["http://t/a".to_string()], vec!["udp://u:1".to_string()]]);
        assert_eq!(m.web_seeds, vec!["http://ws/".to_string()]);
        assert_eq!(m.comment.as_deref(), Some("c"));
        assert_eq!(m.created_by.as_deref(), Some("shoal"));
        assert_eq!(m.creation_date, Some(1_700_000_000));
    }

    #[test]
    fn multi_file_keeps_order_and_zero_length_files() {
        let mut b = TorrentBuilder::multi_file("dir").unwrap();
        b.add_file(vec!["b".into()], 3).unwrap();
        b.add_file(vec!["a".into(), "empty".into()], 0).unwrap();
        b.add_file(vec!["a".into(), "x".into()], 2).unwrap();
        let mut hasher = b.start().unwrap();
        hasher.update(b"bbb").unwrap();
        hasher.update(b"xx").unwrap();
        let m = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
        let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, vec!["dir/b", "dir/a/empty", "dir/a/x"]);
        assert_eq!(m.info.piece_hashes, vec![<[u8; 20]>::from(Sha1::digest(b"bbbxx"))]);
        assert!(m.trackers.is_empty());
    }

    #[test]
    fn hashes_made_elsewhere_give_the_same_torrent() {
        let content: Vec<u8> = (0..40_000u32).map(|i| (i % 241) as u8).collect();
        let builder = || TorrentBuilder::single_file("f.bin", 40_000).unwrap().creation_date(1);
        let mut fed = builder().start().unwrap();
        fed.update(&content).unwrap();
        let hashes: Vec<[u8; 20]> =
            content.chunks(16384).map(|piece| Sha1::digest(piece).into()).collect();
        let given = builder().start().unwrap();
        assert_eq!(given.piece_count(), 3);
        assert_eq!(given.finish_with_hashes(&hashes).unwrap(), fed.finish().unwrap());
        assert_eq!(
            builder().start().unwrap().finish_with_hashes(&hashes[..2]),
            Err(CreateError::PieceHashCount { given: 2, expected: 3 })
        );
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let mut h = TorrentBuilder::single_file("f", 4).unwrap().start().unwrap();
        assert_eq!(h.update(b"12345"), Err(CreateError::LengthMismatch { fed: 5, declared: 4 }));
        h.update(b"123").unwrap();
        assert!(matches!(h.finish(), Err(CreateError::LengthMismatch { fed: 3, declared: 4 })));
    }

    #[test]
    fn rejects_bad_layouts() {
        assert!(matches!(
            TorrentBuilder::single_file("..", 1),
            Err(CreateError::UnsafeName { .. })
        ));
        let mut b = TorrentBuilder::multi_file("d").unwrap();
        assert!(b.add_file(vec!["a/b".into()], 1).is_err());
        assert_eq!(b.add_file(vec![], 1), Err(CreateError::EmptyPath));
        b.add_file(vec!["a".into()], 1).unwrap();
        b.add_file(vec!["a".into()], 1).unwrap();
        assert!(matches!(b.start(), Err(CreateError::DuplicatePath(_))));
        let mut s = TorrentBuilder::single_file("f", 1).unwrap();
        assert_eq!(s.add_file(vec!["x".into()], 1), Err(CreateError::NotMultiFile));
        assert!(matches!(
            TorrentBuilder::single_file("f", 0).unwrap().start(),
            Err(CreateError::Empty)
        ));
        assert!(matches!(
            TorrentBuilder::single_file("f", 1).unwrap().piece_length(20_000).start(),
            Err(CreateError::BadPieceLength(20_000))
        ));
        assert!(matches!(
            TorrentBuilder::single_file("f", 1 << 40).unwrap().piece_length(16384).start(),
            Err(CreateError::TooManyPieces(_))
        ));
    }
}
