//! Fast resume: which pieces were verified, kept beside the size and modification time of
//! every file that holds them, so a restart whose files are unchanged trusts the record
//! instead of hashing everything again (a library of films takes minutes to hash).
//!
//! The record is a hint, never the truth: anything that does not match exactly (another
//! torrent layout, another download folder, a file grown, shrunk, touched or gone, a part
//! file more or less, a record that does not parse or is too large) falls back to the full
//! recheck, which trusts only hashes. That is also why a crash loses nothing: the files are
//! written after the last save, so their times no longer match and the next start rechecks.
//! A record names verified pieces only, and a verified piece is never written again, so a
//! save that races with writes of other pieces cannot make a wrong piece look good.
//!
//! One JSON file per torrent, `<dir>/<info hash>.json`, replaced atomically.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use shoal_proto::InfoHash;

use crate::atomic_file::write_atomically;

/// The record's format; a record of another version is ignored.
const VERSION: u32 = 1;
/// A file modified this close before the record was saved (or after) is not trusted: a write
/// in the same tick of the file system's clock (coarse: milliseconds on Linux, two seconds
/// on FAT) would leave its time unchanged, as git's index knows ("racily clean").
const RACY_NS: u64 = 2_000_000_000;
/// A record larger than this is not read: a bitfield of the most pieces a torrent may have
/// and the stamps of the most files, with room to spare.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// A file holding a torrent's bytes, as the storage found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Relative to the storage's folder, components joined with `/`.
    pub path: String,
    /// `None`: the file does not exist.
    pub len: Option<u64>,
    /// Nanoseconds since the Unix epoch; `None` where the file system keeps no time.
    pub modified_ns: Option<u64>,
}

impl FileStamp {
    /// How `path` (named `name` in the record) is on disk now.
    pub fn of(name: String, path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp {
                path: name,
                len: Some(meta.len()),
                modified_ns: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .and_then(|d| u64::try_from(d.as_nanos()).ok()),
            },
            Err(_) => FileStamp { path: name, len: None, modified_ns: None },
        }
    }
}

/// What a storage's files look like now: the folder and a stamp per file that may hold data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageStamps {
    pub root: PathBuf,
    pub files: Vec<FileStamp>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    info_hash: String,
    root: PathBuf,
    piece_length: u32,
    piece_count: u32,
    /// Verified pieces: the wire's bitfield, in hex.
    have: String,
    /// When the files were stamped, in nanoseconds since the Unix epoch.
    saved_ns: u64,
    files: Vec<FileStamp>,
}

/// One torrent's resume record: where it lives and what it must match.
#[derive(Clone, Debug)]
pub struct ResumeFile {
    path: PathBuf,
    info_hash: InfoHash,
    piece_length: u32,
}

impl ResumeFile {
    /// The record of `info_hash` in `dir`.
    pub fn in_dir(dir: &Path, info_hash: InfoHash, piece_length: u32) -> ResumeFile {
        ResumeFile {
            path: dir.join(format!("{}.json", info_hash.to_hex())),
            info_hash,
            piece_length,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verified pieces the record names, if it is ours and the files are exactly as it
    /// saw them; `None` otherwise (the caller rechecks).
    pub fn load(&self, piece_count: u32, now: &StorageStamps) -> Option<Vec<bool>> {
        self.parse(&read_bounded(&self.path, MAX_RECORD_BYTES)?, piece_count, now)
    }

    /// [`ResumeFile::load`] of a record's bytes (untrusted: any damage means `None`).
    pub fn parse(&self, bytes: &[u8], piece_count: u32, now: &StorageStamps) -> Option<Vec<bool>> {
        let record: Record = serde_json::from_slice(bytes).ok()?;
        let ours = record.version == VERSION
            && record.info_hash == self.info_hash.to_hex()
            && record.piece_length == self.piece_length
            && record.piece_count == piece_count
            && record.root == now.root
            && record.files == now.files
            && settled_before(&record.files, record.saved_ns);
        if !ours {
            return None;
        }
        let bytes = decode_hex(&record.have)?;
        if bytes.len() != (piece_count as usize).div_ceil(8) {
            return None;
        }
        let have: Vec<bool> =
            (0..piece_count as usize).map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0).collect();
        // Spare bits set: not a bitfield this code wrote.
        let spare = bytes.last().map_or(0, |b| b & (0xff >> (piece_count % 8).max(1)));
        if !piece_count.is_multiple_of(8) && spare != 0 {
            return None;
        }
        Some(have)
    }

    /// Saves `have` (one flag per piece: verified) with the files as they were stamped at
    /// `stamped_ns` (taken before the stamps).
    pub fn save(&self, have: &[bool], stamped_ns: u64, now: StorageStamps) -> std::io::Result<()> {
        write_record(&self.path, &self.encode(have, stamped_ns, now)?)
    }

    /// The record [`ResumeFile::save`] writes.
    pub fn encode(
        &self,
        have: &[bool],
        stamped_ns: u64,
        now: StorageStamps,
    ) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; have.len().div_ceil(8)];
        for (i, _) in have.iter().enumerate().filter(|(_, &h)| h) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
        let record = Record {
            version: VERSION,
            info_hash: self.info_hash.to_hex(),
            root: now.root,
            piece_length: self.piece_length,
            piece_count: have.len() as u32,
            have: encode_hex(&bytes),
            saved_ns: stamped_ns,
            files: now.files,
        };
        serde_json::to_vec(&record).map_err(std::io::Error::other)
    }
}

/// Whether every file stamped at `stamped_ns` was last modified long enough before it that a
/// later write would have moved its time (missing files count as settled).
pub fn settled_before(files: &[FileStamp], stamped_ns: u64) -> bool {
    files.iter().all(|f| {
        f.len.is_none() || f.modified_ns.is_some_and(|t| t.saturating_add(RACY_NS) < stamped_ns)
    })
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// Reads a record (or any JSON state file) of at most `max_bytes`; `None` if it is missing,
/// larger, or not what `T` parses.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path, max_bytes: u64) -> Option<T> {
    serde_json::from_slice(&read_bounded(path, max_bytes)?).ok()
}

/// A file's bytes, if there are at most `max_bytes` of them (reading no more than that).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(max_bytes + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max_bytes).then_some(bytes)
}

/// Writes a record (or any state file) atomically: the old one or the new one survives a
/// crash, never a mix.
pub fn write_record(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes)
}

/// Bytes as lowercase hex, as records keep them.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex from a record; `None` unless it is whole bytes of hex digits.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shoal-resume-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn stamps(root: &Path) -> StorageStamps {
        StorageStamps {
            root: root.to_owned(),
            files: vec![FileStamp::of("a.bin".into(), &root.join("a.bin"))],
        }
    }

    #[test]
    fn a_record_is_trusted_only_while_the_files_are_unchanged() {
        let dir = temp_dir();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.bin"), vec![7u8; 1000]).unwrap();
        let resume = ResumeFile::in_dir(&dir.join("resume"), InfoHash([3; 20]), 16384);
        let have = vec![true, false, true, true, false, false, false, false, true, true, false];
        // Saved right after the write: the file's time may not show a write in the same tick.
        resume.save(&have, now_ns(), stamps(&data)).unwrap();
        assert_eq!(resume.load(11, &stamps(&data)), None, "racily clean");
        resume.save(&have, now_ns() + 2 * RACY_NS, stamps(&data)).unwrap();
        assert_eq!(resume.load(11, &stamps(&data)), Some(have.clone()));
        // Another layout, another torrent, another folder: not ours.
        assert_eq!(resume.load(12, &stamps(&data)), None);
        let other = ResumeFile::in_dir(&dir.join("resume"), InfoHash([3; 20]), 32768);
        assert_eq!(other.load(11, &stamps(&data)), None);
        assert_eq!(resume.load(11, &stamps(&dir)), None);
        // The file changed (its time moves with the write).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(data.join("a.bin"), vec![8u8; 1000]).unwrap();
        assert_eq!(resume.load(11, &stamps(&data)), None);
        // Gone.
        std::fs::remove_file(data.join("a.bin")).unwrap();
        assert_eq!(resume.load(11, &stamps(&data)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Records are files a user (or a crash, or another program) may have changed: thousands
    /// of random mutations of a good one are refused or read, never a panic, and whatever is
    /// read is a whole bitfield of the torrent's size.
    #[test]
    fn mutated_records_never_panic() {
        use rand::{Rng, SeedableRng};
        let dir = temp_dir();
        let resume = ResumeFile::in_dir(&dir, InfoHash([5; 20]), 16384);
        let now = stamps(&dir);
        resume
            .save(&[true, false, true, true, false], now_ns() + 2 * RACY_NS, now.clone())
            .unwrap();
        let good = std::fs::read(resume.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => {
                        let json = b"0f\"{}[],:";
                        bytes.insert(at, json[rng.random_range(0..json.len())]);
                    }
                }
            }
            if let Some(have) = resume.parse(&bytes, 5, &now) {
                assert_eq!(have.len(), 5);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let dir = temp_dir();
        let resume = ResumeFile::in_dir(&dir, InfoHash([4; 20]), 16384);
        let now = stamps(&dir);
        resume.save(&[true; 9], now_ns() + 2 * RACY_NS, now.clone()).unwrap();
        assert_eq!(resume.load(9, &now), Some(vec![true; 9]));
        let text = std::fs::read_to_string(resume.path()).unwrap();
        // Spare bits set, odd hex, not hex, truncated JSON: all refused, none panics.
        for bad in [
            text.replace("\"ff80\"", "\"ffff\""),
            text.replace("\"ff80\"", "\"ff8\""),
            text.replace("\"ff80\"", "\"zz80\""),
            text[..text.len() / 2].to_owned(),
        ] {
            assert_ne!(bad, text);
            std::fs::write(resume.path(), bad).unwrap();
            assert_eq!(resume.load(9, &now), None);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
