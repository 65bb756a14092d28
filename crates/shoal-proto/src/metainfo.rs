//! Torrent metainfo (`.torrent` files): BEP 3 v1 info dictionaries, BEP 12 tracker tiers,
//! BEP 19 web seeds and BEP 47 padding files.
//!
//! A torrent is untrusted input that later decides where files are written, so parsing is
//! strict: every path component is checked and rejected (never rewritten) when it could escape
//! the download folder, every count and length is bounded, and each error names the field it
//! is about. Keys we do not know are ignored, as BEP 3 asks.

use std::ops::Range;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, BencodeError, Dict, Encoder, Value};
use crate::magnet::Magnet;
use crate::piece_sizes::PieceSizes;
use crate::types::InfoHash;

/// Largest `.torrent` (or info dictionary) we agree to parse. The biggest legitimate input is
/// dominated by `pieces`: [`MAX_PIECES`] hashes take 80 MiB.
pub const MAX_METAINFO_BYTES: usize = 128 << 20;
/// Most files one torrent may list (padding files included).
pub const MAX_FILES: usize = 100_000;
/// Most directory levels in one file's `path` list.
pub const MAX_PATH_DEPTH: usize = 64;
/// Longest path component, in bytes (the usual file-system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Largest accepted piece length.
pub const MAX_PIECE_LENGTH: u32 = 256 << 20;
/// Most pieces one torrent may have; bounds the bitfield and the hash table we keep in memory.
pub const MAX_PIECES: u32 = 1 << 22;
/// Largest total size: 2^53 bytes, so sizes stay exact in JavaScript (the web driver) too.
pub const MAX_TOTAL_LENGTH: u64 = 1 << 53;
/// Most trackers over all tiers, and most web seeds.
pub const MAX_TRACKERS: usize = 1_000;
pub const MAX_WEB_SEEDS: usize = 1_000;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetainfoError {
    #[error("not valid bencode")]
    Bencode(#[from] BencodeError),
    #[error("input is {0} bytes, more than the {MAX_METAINFO_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("`{0}` is not a dictionary")]
    NotADictionary(&'static str),
    #[error("missing required field `{0}`")]
    Missing(String),
    #[error("field `{field}` should be {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(String),
    #[error("unsafe path component {component:?} in `{field}`: {reason}")]
    UnsafePath { field: String, component: String, reason: &'static str },
    #[error("field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("`{field}` has more than {limit} entries")]
    TooMany { field: String, limit: usize },
    #[error(
        "`info.pieces` holds {actual} hashes, but {total_length} bytes in pieces of \
         {piece_length} bytes need {expected}"
    )]
    PieceCountMismatch { actual: u64, expected: u64, total_length: u64, piece_length: u32 },
    #[error("two files share the path {0:?}")]
    DuplicatePath(String),
    #[error("v2-only torrents are not supported (the info dictionary has no v1 `pieces`)")]
    V2Only,
}

/// A parsed `.torrent` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    pub info: Info,
    pub info_hash: InfoHash,
    /// The info dictionary exactly as it appeared in the input (what the info hash covers, and
    /// what BEP 9 serves to peers fetching metadata).
    pub info_bytes: Vec<u8>,
    /// Tracker tiers (BEP 12). A lone `announce` becomes one tier of one tracker.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 `url-list`.
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch, as written by the creator.
    pub creation_date: Option<i64>,
}

/// The `info` dictionary: what the content is and how it is cut into pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u32,
    pub piece_hashes: Vec<[u8; 20]>,
    /// Files in torrent order; their byte ranges are contiguous and cover the whole torrent.
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    pub private: bool,
    /// Whether the torrent used the `files` form (a folder named `name`), even with one file.
    pub multi_file: bool,
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path components, each checked safe. Multi-file: `[name, dirs.., file]`;
    /// single-file: `[name]`.
    pub path: Vec<String>,
    pub length: u64,
    /// Byte offset of the file's first byte within the torrent's content.
    pub offset: u64,
    /// A BEP 47 padding file: zeros that exist only to align the next file to a piece.
    pub padding: bool,
}

impl FileEntry {
    /// The file's bytes within the torrent's content.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.length
    }
}

impl Metainfo {
    /// Parses a complete `.torrent` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        check_input_size(bytes)?;
        let root = bencode::decode(bytes)?;
        let root = root.as_dict().ok_or(MetainfoError::NotADictionary("torrent"))?;
        let info_dict = match root.get(b"info") {
            Some(Value::Dict(d)) => d,
            Some(_) => return Err(MetainfoError::NotADictionary("info")),
            None => return Err(MetainfoError::Missing("info".into())),
        };
        let info = Info::from_dict(info_dict)?;
        Ok(Metainfo {
            info,
            info_hash: info_hash_of(info_dict.raw()),
            info_bytes: info_dict.raw().to_vec(),
            trackers: parse_trackers(root)?,
            web_seeds: parse_web_seeds(root)?,
            comment: optional_text(root, "comment"),
            created_by: optional_text(root, "created by"),
            creation_date: root.get_int(b"creation date"),
        })
    }

    /// Builds a metainfo from a bare info dictionary (as fetched from peers with BEP 9). It has
    /// no trackers or web seeds; the caller adds those it learnt from the magnet.
    pub fn from_info_bytes(info_bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let info = Info::from_bytes(info_bytes)?;
        Ok(Metainfo {
            info,
            info_hash: info_hash_of(info_bytes),
            info_bytes: info_bytes.to_vec(),
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// All trackers, tiers flattened, in order.
    pub fn tracker_urls(&self) -> impl Iterator<Item = &str> {
        self.trackers.iter().flatten().map(String::as_str)
    }

    /// A magnet link for this torrent: info hash, name, trackers and web seeds.
    pub fn to_magnet(&self) -> Magnet {
        let mut magnet = Magnet::new(self.info_hash);
        magnet.display_name = Some(self.info.name.clone());
        magnet.trackers = dedup(self.tracker_urls().map(str::to_owned));
        magnet.web_seeds = self.web_seeds.clone();
        magnet
    }

    pub fn magnet_uri(&self) -> String {
        self.to_magnet().to_uri()
    }

    /// Encodes a `.torrent` file: the original info bytes plus the trackers, web seeds and
    /// descriptive fields held now (used to save a torrent obtained from a magnet).
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.begin_dict();
        let first_tracker = self.tracker_urls().next();
        if let Some(first) = first_tracker {
            enc.key(b"announce").str(first);
            enc.key(b"announce-list").begin_list();
            for tier in self.trackers.iter().filter(|t| !t.is_empty()) {
                enc.begin_list();
                for url in tier {
                    enc.str(url);
                }
                enc.end();
            }
            enc.end();
        }
        if let Some(comment) = &self.comment {
            enc.key(b"comment").str(comment);
        }
        if let Some(created_by) = &self.created_by {
            enc.key(b"created by").str(created_by);
        }
        if let Some(date) = self.creation_date {
            enc.key(b"creation date").int(date);
        }
        enc.key(b"info").raw(&self.info_bytes);
        if !self.web_seeds.is_empty() {
            enc.key(b"url-list").begin_list();
            for url in &self.web_seeds {
                enc.str(url);
            }
            enc.end();
        }
        enc.end();
        enc.finish()
    }
}

/// SHA-1 of an info dictionary's bytes.
pub fn info_hash_of(info_bytes: &[u8]) -> InfoHash {
    InfoHash(Sha1::digest(info_bytes).into())
}

impl Info {
    /// Parses a bencoded info dictionary on its own (after a magnet's metadata download).
    pub fn from_bytes(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
        check_input_size(info_bytes)?;
        let value = bencode::decode(info_bytes)?;
        let dict = value.as_dict().ok_or(MetainfoError::NotADictionary("info"))?;
        Info::from_dict(dict)
    }

    fn from_dict(info: &Dict<'_>) -> Result<Info, MetainfoError> {
        let name = utf8_field(info, "name", "info.name")?;
        check_component(&name, "info.name")?;

        let pieces = match info.get(b"pieces") {
            Some(Value::Bytes(b)) => *b,
            Some(_) => return Err(wrong_type("info.pieces", "a byte string")),
            // A v2-only info dictionary (BEP 52) has `meta version` 2 and a `file tree`
            // instead; hybrids keep v1 `pieces` and parse below.
            None if info.get_int(b"meta version") == Some(2) => return Err(MetainfoError::V2Only),
            None => return Err(MetainfoError::Missing("info.pieces".into())),
        };
        let piece_length = parse_piece_length(info)?;
        let private = match info.get(b"private") {
            None => false,
            Some(Value::Int(i)) => *i == 1,
            Some(_) => return Err(wrong_type("info.private", "an integer")),
        };

        let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => {
                return Err(invalid("info", "has both `length` and `files`"));
            }
            (Some(length), None) => {
                let length = parse_length(length, "info.length")?;
                let file =
                    FileEntry { path: vec![name.clone()], length, offset: 0, padding: false };
                (vec![file], false)
            }
            (None, Some(files)) => (parse_files(&name, files)?, true),
            (None, None) => return Err(MetainfoError::Missing("info.length or info.files".into())),
        };
        let total_length = files.last().map_or(0, |f| f.offset + f.length);
        if total_length == 0 {
            return Err(invalid("info", "the torrent's total length is 0"));
        }

        let piece_hashes = parse_piece_hashes(pieces, total_length, piece_length)?;
        Ok(Info { name, piece_length, piece_hashes, files, total_length, private, multi_file })
    }

    pub fn piece_count(&self) -> u32 {
        // Bounded by MAX_PIECES at parse time.
        self.piece_hashes.len() as u32
    }

    /// How the content is cut into pieces.
    pub fn piece_sizes(&self) -> PieceSizes {
        PieceSizes::new(self.piece_length, self.total_length)
    }

    /// Length of piece `index`: `piece_length` except for a shorter last piece; 0 past the end.
    pub fn piece_len(&self, index: u32) -> u32 {
        self.piece_sizes().piece_len(index).unwrap_or(0)
    }

    /// The content bytes covered by piece `index` (empty past the end).
    pub fn piece_range(&self, index: u32) -> Range<u64> {
        let end = self.total_length;
        self.piece_sizes().piece_range(index).unwrap_or(end..end)
    }

    /// Verified bytes of each file (one entry per file, padding files included), from the
    /// verified pieces: each piece counts for the part of each file it covers.
    pub fn file_bytes_done(&self, have: &crate::bitfield::Bitfield) -> Vec<u64> {
        let sizes = self.piece_sizes();
        self.files
            .iter()
            .map(|file| {
                let range = file.range();
                sizes
                    .pieces_overlapping(range.clone())
                    .filter(|&piece| piece < have.len() && have.get(piece))
                    .filter_map(|piece| sizes.piece_range(piece))
                    .map(|bytes| {
                        bytes.end.min(range.end).saturating_sub(bytes.start.max(range.start))
                    })
                    .sum()
            })
            .collect()
    }

    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.piece_hashes.get(index as usize)
    }

    /// The content bytes of file `index`, if there is such a file.
    pub fn file_range(&self, index: usize) -> Option<Range<u64>> {
        self.files.get(index).map(FileEntry::range)
    }

    /// The files overlapping `range` of the content, in order, each with the overlapping part
    /// expressed as a range within that file. Zero-length files are skipped.
    pub fn file_slices(&self, range: Range<u64>) -> impl Iterator<Item = (usize, Range<u64>)> + '_ {
        // Files are contiguous and sorted by offset: binary-search the first one that ends
        // after range.start.
        let first = self.files.partition_point(|f| f.offset + f.length <= range.start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < range.end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let start = range.start.max(f.offset) - f.offset;
                let end = range.end.min(f.offset + f.length) - f.offset;
                (first + i, start..end)
            })
    }
}

fn check_input_size(bytes: &[u8]) -> Result<(), MetainfoError> {
    if bytes.len() > MAX_METAINFO_BYTES {
        return Err(MetainfoError::TooLarge(bytes.len()));
    }
    Ok(())
}

fn parse_piece_length(info: &Dict<'_>) -> Result<u32, MetainfoError> {
    let raw = match info.get(b"piece length") {
        Some(Value::Int(i)) => *i,
        Some(_) => return Err(wrong_type("info.piece length", "an integer")),
        None => return Err(MetainfoError::Missing("info.piece length".into())),
    };
    if raw <= 0 || raw > i64::from(MAX_PIECE_LENGTH) {
        return Err(invalid(
            "info.piece length",
            format!("{raw} is outside 1..={MAX_PIECE_LENGTH}"),
        ));
    }
    Ok(raw as u32)
}

fn parse_piece_hashes(
    pieces: &[u8],
    total_length: u64,
    piece_length: u32,
) -> Result<Vec<[u8; 20]>, MetainfoError> {
    if !pieces.len().is_multiple_of(20) {
        return Err(invalid(
            "info.pieces",
            format!("length {} is not a multiple of 20", pieces.len()),
        ));
    }
    let expected = PieceSizes::new(piece_length, total_length).count();
    let actual = (pieces.len() / 20) as u64;
    if expected > u64::from(MAX_PIECES) {
        return Err(invalid(
            "info.pieces",
            format!("{expected} pieces is more than the limit of {MAX_PIECES}"),
        ));
    }
    if actual != expected {
        return Err(MetainfoError::PieceCountMismatch {
            actual,
            expected,
            total_length,
            piece_length,
        });
    }
    Ok(pieces
        .chunks_exact(20)
        .map(|chunk| {
            let mut hash = [0u8; 20];
            hash.copy_from_slice(chunk);
            hash
        })
        .collect())
}

fn parse_length(value: &Value<'_>, field: &str) -> Result<u64, MetainfoError> {
    let length = value.as_int().ok_or_else(|| wrong_type(field, "an integer"))?;
    if length < 0 {
        return Err(invalid(field, format!("negative length {length}")));
    }
    let length = length as u64;
    if length > MAX_TOTAL_LENGTH {
        return Err(invalid(field, format!("{length} bytes is more than 2^53")));
    }
    Ok(length)
}

fn parse_files(name: &str, files: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files.as_list().ok_or_else(|| wrong_type("info.files", "a list"))?;
    if list.is_empty() {
        return Err(invalid("info.files", "the list is empty"));
    }
    if list.len() > MAX_FILES {
        return Err(MetainfoError::TooMany { field: "info.files".into(), limit: MAX_FILES });
    }
    let mut out = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    for (i, entry) in list.iter().enumerate() {
        let field = format!("info.files[{i}]");
        let dict = entry.as_dict().ok_or_else(|| wrong_type(&field, "a dictionary"))?;
        let length_field = format!("{field}.length");
        let length = match dict.get(b"length") {
            Some(v) => parse_length(v, &length_field)?,
            None => return Err(MetainfoError::Missing(length_field)),
        };
        let mut path = vec![name.to_owned()];
        path.extend(parse_file_path(dict, &field)?);
        let padding = dict.get_bytes(b"attr").is_some_and(|attr| attr.contains(&b'p'));
        out.push(FileEntry { path, length, offset, padding });
        offset = offset
            .checked_add(length)
            .filter(|total| *total <= MAX_TOTAL_LENGTH)
            .ok_or_else(|| invalid("info.files", "total length is more than 2^53"))?;
    }
    check_unique_paths(&out)?;
    Ok(out)
}

/// A file's `path` list, preferring `path.utf-8` when it is present and valid (some old
/// clients wrote a local code page in `path` and UTF-8 there).
fn parse_file_path(dict: &Dict<'_>, field: &str) -> Result<Vec<String>, MetainfoError> {
    let utf8_alternative =
        dict.get_list(b"path.utf-8").filter(|parts| parts.iter().all(|p| p.as_str().is_some()));
    let (key, parts) = match utf8_alternative {
        Some(parts) => ("path.utf-8", parts),
        None => match dict.get(b"path") {
            Some(Value::List(parts)) => ("path", parts.as_slice()),
            Some(_) => return Err(wrong_type(&format!("{field}.path"), "a list")),
            None => return Err(MetainfoError::Missing(format!("{field}.path"))),
        },
    };
    let field = format!("{field}.{key}");
    if parts.is_empty() {
        return Err(invalid(&field, "the path is empty"));
    }
    if parts.len() > MAX_PATH_DEPTH {
        return Err(MetainfoError::TooMany { field, limit: MAX_PATH_DEPTH });
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let bytes = part.as_bytes().ok_or_else(|| wrong_type(&field, "a list of strings"))?;
        let text = std::str::from_utf8(bytes).map_err(|_| MetainfoError::NotUtf8(field.clone()))?;
        check_component(text, &field)?;
        out.push(text.to_owned());
    }
    Ok(out)
}

/// Two real files with the same path, or a file whose path is a folder of another, would
/// overwrite each other on disk. Padding files are never written, so they may repeat.
fn check_unique_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> =
        files.iter().filter(|f| !f.padding).map(|f| f.path.as_slice()).collect();
    paths.sort_unstable();
    // After sorting, a path that is a prefix of another sorts directly before some path that
    // starts with it, and checking neighbours is enough.
    for pair in paths.windows(2) {
        if let [a, b] = pair {
            if b.starts_with(a) {
                return Err(MetainfoError::DuplicatePath(a.join("/")));
            }
        }
    }
    Ok(())
}

/// Why `component` cannot be used as one file or folder name, if it cannot.
pub fn path_component_problem(component: &str) -> Option<&'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        Some("empty")
    } else if component == "." || component == ".." {
        Some("refers to a folder itself or its parent")
    } else if bytes.contains(&b'/') || bytes.contains(&b'\\') {
        Some("contains a path separator")
    } else if bytes.contains(&0) {
        Some("contains a NUL byte")
    } else if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        Some("starts with a drive letter")
    } else if bytes.len() > MAX_COMPONENT_BYTES {
        Some("longer than 255 bytes")
    } else {
        None
    }
}

fn check_component(component: &str, field: &str) -> Result<(), MetainfoError> {
    match path_component_problem(component) {
        None => Ok(()),
        Some(reason) => Err(MetainfoError::UnsafePath {
            field: field.to_owned(),
            component: component.chars().take(64).collect(),
            reason,
        }),
    }
}

/// A required text field, preferring its `.utf-8` twin when that is valid UTF-8.
fn utf8_field(dict: &Dict<'_>, key: &str, field: &str) -> Result<String, MetainfoError> {
    let twin = format!("{key}.utf-8");
    if let Some(text) = dict.get_str(twin.as_bytes()) {
        return Ok(text.to_owned());
    }
    match dict.get(key.as_bytes()) {
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| MetainfoError::NotUtf8(field.to_owned())),
        Some(_) => Err(wrong_type(field, "a string")),
        None => Err(MetainfoError::Missing(field.to_owned())),
    }
}

/// A descriptive field outside the info hash: shown to users only, so a bad encoding is
/// repaired rather than fatal.
fn optional_text(dict: &Dict<'_>, key: &str) -> Option<String> {
    let twin = format!("{key}.utf-8");
    dict.get_str(twin.as_bytes())
        .map(str::to_owned)
        .or_else(|| dict.get_bytes(key.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// `announce-list` when present and non-empty (BEP 12 says it replaces `announce`), else
/// `announce`. Entries that are not UTF-8 strings are skipped: trackers are outside the info
/// hash and real torrents carry such junk; duplicates are dropped.
fn parse_trackers(root: &Dict<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    let mut seen = 0usize;
    let mut all: Vec<String> = Vec::new();
    let mut tiers: Vec<Vec<String>> = Vec::new();
    if let Some(list) = root.get_list(b"announce-list") {
        for tier in list.iter().filter_map(Value::as_list) {
            let mut urls = Vec::new();
            for entry in tier {
                // Counts every entry, junk and duplicates included, so the dedup scan below
                // stays bounded.
                seen += 1;
                if seen > MAX_TRACKERS {
                    return Err(MetainfoError::TooMany {
                        field: "announce-list".into(),
                        limit: MAX_TRACKERS,
                    });
                }
                let Some(url) = entry.as_str().map(str::trim) else { continue };
                if url.is_empty() || all.iter().any(|u| u == url) {
                    continue;
                }
                all.push(url.to_owned());
                urls.push(url.to_owned());
            }
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = root.get_str(b"announce").map(str::trim).filter(|u| !u.is_empty()) {
            tiers.push(vec![url.to_owned()]);
        }
    }
    Ok(tiers)
}

/// BEP 19 `url-list`: a single string or a list of strings.
fn parse_web_seeds(root: &Dict<'_>) -> Result<Vec<String>, MetainfoError> {
    let urls: Vec<&str> = match root.get(b"url-list") {
        Some(Value::Bytes(_)) => root.get_str(b"url-list").into_iter().collect(),
        Some(Value::List(list)) if list.len() > MAX_WEB_SEEDS => {
            return Err(MetainfoError::TooMany { field: "url-list".into(), limit: MAX_WEB_SEEDS });
        }
        Some(Value::List(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    Ok(dedup(urls.into_iter().map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned)))
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn wrong_type(field: &str, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType { field: field.to_owned(), expected }
}

fn invalid(field: &str, reason: impl Into<String>) -> MetainfoError {
    MetainfoError::Invalid { field: field.to_owned(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-file torrent of `length` bytes with `piece_length` pieces and zeroed hashes.
    fn single(length: u64, piece_length: u32) -> Vec<u8> {
        let pieces = length.div_ceil(u64::from(piece_length.max(1))) as usize;
        let mut enc = Encoder::new();
        enc.begin_dict().key(b"announce").str("http://t.example/announce");
        enc.key(b"info").begin_dict();
        enc.key(b"length").int(length as i64).key(b"name").str("a.bin");
        enc.key(b"piece length").int(i64::from(piece_length));
        enc.key(b"pieces").bytes(&vec![7u8; pieces * 20]);
        enc.end().end();
        enc.finish()
    }

    fn multi(files: &[(&[&str], i64)]) -> Vec<u8> {
        let total: i64 = files.iter().map(|f| f.1.max(0)).sum();
        let pieces = (total as u64).div_ceil(16384) as usize;
        let mut enc = Encoder::new();
        enc.begin_dict().key(b"info").begin_dict().key(b"files").begin_list();
        for (path, length) in files {
            enc.begin_dict().key(b"length").int(*length).key(b"path").begin_list();
            for part in *path {
                enc.str(part);
            }
            enc.end().end();
        }
        enc.end().key(b"name").str("dir").key(b"piece length").int(16384);
        enc.key(b"pieces").bytes(&vec![1u8; pieces * 20]);
        enc.end().end();
        enc.finish()
    }

    #[test]
    fn parses_single_file_and_piece_geometry() {
        let m = Metainfo::from_bytes(&single(40_000, 16384)).unwrap();
        assert_eq!(m.info.name, "a.bin");
        assert!(!m.info.multi_file);
        assert_eq!(m.info.piece_count(), 3);
        assert_eq!(m.info.piece_len(0), 16384);
        assert_eq!(m.info.piece_len(2), 40_000 - 2 * 16384);
        assert_eq!(m.info.piece_len(3), 0);
        assert_eq!(m.info.piece_range(2), 32768..40_000);
        assert_eq!(m.trackers, vec![vec!["http://t.example/announce".to_string()]]);
        assert_eq!(m.info_hash, info_hash_of(&m.info_bytes));
        assert_eq!(m.info.files[0].path, vec!["a.bin"]);
    }

    #[test]
    fn multi_file_offsets_and_slices() {
        let m = Metainfo::from_bytes(&multi(&[
            (&["x", "a"], 10),
            (&["empty"], 0),
            (&["b"], 20_000),
            (&["c"], 5),
        ]))
        .unwrap();
        let info = &m.info;
        assert!(info.multi_file);
        assert_eq!(info.total_length, 20_015);
        assert_eq!(info.files[2].path, vec!["dir", "b"]);
        assert_eq!(info.file_range(2), Some(10..20_010));
        assert_eq!(info.file_range(9), None);
        let slices: Vec<_> = info.file_slices(info.piece_range(0)).collect();
        assert_eq!(slices, vec![(0, 0..10), (2, 0..16374)]);
        let slices: Vec<_> = info.file_slices(info.piece_range(1)).collect();
        assert_eq!(slices, vec![(2, 16374..20_000), (3, 0..5)]);
    }

    #[test]
    fn rejects_duplicate_and_nested_paths() {
        let err = Metainfo::from_bytes(&multi(&[(&["a"], 1), (&["a"], 1)])).unwrap_err();
        assert_eq!(err, MetainfoError::DuplicatePath("dir/a".into()));
        let err = Metainfo::from_bytes(&multi(&[(&["a"], 1), (&["a", "b"], 1)])).unwrap_err();
        assert!(matches!(err, MetainfoError::DuplicatePath(_)));
    }

    #[test]
    fn rejects_unsafe_components() {
        for bad in ["..", ".", "", "a/b", "a\\b", "C:", "c:evil", "nul\0"] {
            let err = Metainfo::from_bytes(&multi(&[(&["ok", bad], 1)])).unwrap_err();
            assert!(
                matches!(err, MetainfoError::UnsafePath { ref field, .. } if field == "info.files[0].path"),
                "{bad:?} gave {err:?}"
            );
        }
        let long = "x".repeat(256);
        assert!(Metainfo::from_bytes(&multi(&[(&[long.as_str()], 1)])).is_err());
        assert!(path_component_problem(&"x".repeat(255)).is_none());
    }

    #[test]
    fn bounds_lengths_and_pieces() {
        assert!(matches!(
            Metainfo::from_bytes(&single(40_000, 0)),
            Err(MetainfoError::Invalid { ref field, .. }) if field == "info.piece length"
        ));
        let err = Metainfo::from_bytes(&multi(&[(&["a"], -1)])).unwrap_err();
        assert!(
            matches!(err, MetainfoError::Invalid { ref field, .. } if field == "info.files[0].length")
        );
        assert!(Metainfo::from_bytes(&single(0, 16384)).is_err());
    }

    #[test]
    fn v2_only_is_reported() {
        let mut enc = Encoder::new();
        enc.begin_dict().key(b"info").begin_dict();
        enc.key(b"file tree").begin_dict().end();
        enc.key(b"meta version").int(2).key(b"name").str("v2");
        enc.key(b"piece length").int(16384).end().end();
        assert_eq!(Metainfo::from_bytes(&enc.finish()), Err(MetainfoError::V2Only));
    }

    #[test]
    fn announce_list_wins_and_dedups() {
        let mut enc = Encoder::new();
        enc.begin_dict().key(b"announce").str("http://a/");
        enc.key(b"announce-list").begin_list();
        enc.begin_list().str("http://b/").str("http://c/").end();
        enc.begin_list().str("http://b/").end();
        enc.begin_list().int(3).str("").end();
        enc.end();
        enc.key(b"info").raw(&Metainfo::from_bytes(&single(5, 16384)).unwrap().info_bytes);
        enc.key(b"url-list").str("http://seed/");
        enc.end();
        let m = Metainfo::from_bytes(&enc.finish()).unwrap();
        assert_eq!(m.trackers, vec![vec!["http://b/".to_string(), "http://c/".to_string()]]);
        assert_eq!(m.web_seeds, vec!["http://seed/".to_string()]);
    }

    #[test]
    fn to_torrent_bytes_round_trips() {
        let mut m = Metainfo::from_bytes(&single(100, 16384)).unwrap();
        m.trackers = vec![vec!["udp://x:1".into()], vec!["http://y/".into()]];
        m.web_seeds = vec!["http://ws/".into()];
        m.comment = Some("hi".into());
        let again = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again, m);
    }

    /// A piece counts for each file it covers, for the part it covers; files of no verified
    /// piece have nothing.
    #[test]
    fn file_bytes_done_splits_pieces_between_their_files() {
        use crate::create::TorrentBuilder;
        // Files of 10, 30 and 24 KiB in 16 KiB pieces: 0..16 | 16..32 | 32..48 | 48..64 KiB.
        const K: u64 = 1024;
        let mut builder = TorrentBuilder::multi_file("d").expect("builder");
        for (name, kib) in [("a", 10), ("b", 30), ("c", 24)] {
            builder.add_file(vec![name.into()], kib * K).expect("a file");
        }
        let mut hasher = builder.piece_length(16 * K as u32).start().expect("start");
        hasher.update(&vec![1u8; 64 * K as usize]).expect("data");
        let meta = Metainfo::from_bytes(&hasher.finish().expect("finish")).expect("parses");
        let mut have = crate::bitfield::Bitfield::new(4);
        assert_eq!(meta.info.file_bytes_done(&have), vec![0, 0, 0]);
        have.set(1); // 16..32: all of it in b
        assert_eq!(meta.info.file_bytes_done(&have), vec![0, 16 * K, 0]);
        have.set(2); // 32..48: b's last 8, c's first 8
        assert_eq!(meta.info.file_bytes_done(&have), vec![0, 24 * K, 8 * K]);
        have.set(0);
        have.set(3);
        assert_eq!(meta.info.file_bytes_done(&have), vec![10 * K, 30 * K, 24 * K]);
    }
}
