//! A bencode writer for hand-made torrents: it writes whatever it is given, bad values
//! included, so tests can build exactly the malformed metainfo they need.

use std::collections::BTreeMap;

/// A bencode value. Dictionaries keep their keys sorted, as bencode requires.
#[derive(Clone, Debug)]
pub enum Ben {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Ben>),
    Dict(BTreeMap<Vec<u8>, Ben>),
}

impl Ben {
    pub fn str(text: &str) -> Ben {
        Ben::Bytes(text.as_bytes().to_vec())
    }

    pub fn list_of_str(items: &[&str]) -> Ben {
        Ben::List(items.iter().map(|s| Ben::str(s)).collect())
    }

    pub fn dict(entries: &[(&str, Ben)]) -> Ben {
        Ben::Dict(entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect())
    }

    /// Sets (or replaces) a key of a dictionary; panics on anything else.
    pub fn set(&mut self, key: &str, value: Ben) -> &mut Ben {
        match self {
            Ben::Dict(map) => {
                map.insert(key.as_bytes().to_vec(), value);
            }
            other => panic!("set {key:?} on a non-dictionary {other:?}"),
        }
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Ben::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Ben::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Ben::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Ben::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// `n` piece hashes (their values do not matter to a parser).
pub fn fake_pieces(n: usize) -> Ben {
    Ben::Bytes((0..n * 20).map(|i| (i * 7 % 251) as u8).collect())
}

/// Hashes for `total` bytes in pieces of `piece_length`; one when those make no sense.
fn piece_count(total: i64, piece_length: i64) -> usize {
    if total <= 0 || piece_length <= 0 {
        return 1;
    }
    usize::try_from((total - 1) / piece_length + 1).unwrap_or(1).min(1 << 20)
}

/// A single-file info dictionary: `length` bytes in pieces of `piece_length` (well-formed
/// when the numbers are).
pub fn single_file_info(name: &str, length: i64, piece_length: i64) -> Ben {
    let pieces = piece_count(length, piece_length);
    Ben::dict(&[
        ("name", Ben::str(name)),
        ("length", Ben::Int(length)),
        ("piece length", Ben::Int(piece_length)),
        ("pieces", fake_pieces(pieces)),
    ])
}

/// A multi-file info dictionary; each file is (path components, length).
pub fn multi_file_info(name: &str, files: &[(&[&str], i64)], piece_length: i64) -> Ben {
    let total: i64 = files.iter().map(|(_, len)| len).sum();
    let pieces = piece_count(total, piece_length);
    let list = files
        .iter()
        .map(|(path, len)| {
            Ben::dict(&[("path", Ben::list_of_str(path)), ("length", Ben::Int(*len))])
        })
        .collect();
    Ben::dict(&[
        ("name", Ben::str(name)),
        ("files", Ben::List(list)),
        ("piece length", Ben::Int(piece_length)),
        ("pieces", fake_pieces(pieces)),
    ])
}

/// A .torrent around an info dictionary (no trackers: nothing to contact).
pub fn torrent(info: Ben) -> Vec<u8> {
    Ben::dict(&[("info", info)]).encode()
}
