//! Torrents made of shared paths (`shoal seed PATH`, `shoal serve FILES`), remembered so that
//! a restart does not hash the files again to make the same torrent: the info dictionary is
//! kept beside the size and modification time of every file it was made from, and taken
//! again only while all of them are exactly so (and were not modified in the seconds before
//! they were stamped: `shoal::resume::settled_before`). The torrent's trackers and web seeds
//! are not part of it (they are outside the info dictionary, and `serve`'s name its port).
//! With the torrent's resume record (`shoal::resume`), a restart reads no file at all.
//!
//! One JSON file per shared path and settings, `<resume dir>/made/<key>.json`, replaced
//! atomically; any mismatch or damage means the torrent is made again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use shoal::resume::{decode_hex, encode_hex, read_record, settled_before, write_record, FileStamp};

const VERSION: u32 = 1;
/// A record larger than this is neither read nor written (a torrent of millions of pieces is
/// simply made again).
const MAX_RECORD_BYTES: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    path: PathBuf,
    name: String,
    piece_size: Option<u32>,
    stamped_ns: u64,
    files: Vec<FileStamp>,
    /// The bencoded info dictionary, in hex.
    info: String,
}

/// Where the torrent made of one path with one set of settings is remembered.
pub struct MadeRecord {
    file: PathBuf,
    path: PathBuf,
    name: String,
    piece_size: Option<u32>,
}

impl MadeRecord {
    /// The record for the canonical `path` shared as `name` with `piece_size`, under `dir`.
    pub fn new(dir: &Path, path: &Path, name: &str, piece_size: Option<u32>) -> MadeRecord {
        let mut key = Sha1::new();
        key.update(path.as_os_str().as_encoded_bytes());
        key.update([0]);
        key.update(name.as_bytes());
        key.update(piece_size.unwrap_or(0).to_be_bytes());
        let key = encode_hex(&key.finalize());
        MadeRecord {
            file: dir.join("made").join(format!("{key}.json")),
            path: path.to_owned(),
            name: name.to_owned(),
            piece_size,
        }
    }

    /// The files (their paths on disk, in the torrent's order) as they are now.
    pub fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
        files.iter().map(|p| FileStamp::of(p.display().to_string(), p)).collect()
    }

    /// The info dictionary made last time, if `files` are exactly as they were then.
    pub fn load(&self, files: &[FileStamp]) -> Option<Vec<u8>> {
        let record: Record = read_record(&self.file, MAX_RECORD_BYTES)?;
        let ours = record.version == VERSION
            && record.path == self.path
            && record.name == self.name
            && record.piece_size == self.piece_size
            && record.files == files
            && settled_before(files, record.stamped_ns);
        if !ours {
            return None;
        }
        decode_hex(&record.info)
    }

    /// Remembers `info` (bencoded), made of `files` as stamped at `stamped_ns` (before they
    /// were read). Failing only costs the next start a hash: it is logged, not returned.
    pub fn save(&self, files: Vec<FileStamp>, stamped_ns: u64, info: &[u8]) {
        // Hex doubles it; the rest of the record must fit too.
        if info.len() as u64 * 2 > MAX_RECORD_BYTES / 2 {
            return;
        }
        let record = Record {
            version: VERSION,
            path: self.path.clone(),
            name: self.name.clone(),
            piece_size: self.piece_size,
            stamped_ns,
            files,
            info: encode_hex(info),
        };
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|text| write_record(&self.file, &text));
        if let Err(e) = written {
            tracing::warn!(path = %self.file.display(), "cannot remember the torrent made: {e}");
        }
    }
}
