//! Making .torrent files with libtorrent (through `tests/peers/make_torrent.py`), so that
//! Shoal is tested against metainfo written by another implementation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::paths::{peer_script, require_tool, PYTHON};
use crate::process::run_for_json;

/// Options for [`make_torrent`].
#[derive(Clone, Debug)]
pub struct TorrentOpts {
    /// Piece size in KiB: a power of two, at least 16.
    pub piece_kib: u32,
    /// Announce URLs, one tier each.
    pub trackers: Vec<String>,
    /// BEP 19 web seed URLs.
    pub web_seeds: Vec<String>,
    pub private: bool,
}

impl Default for TorrentOpts {
    fn default() -> Self {
        TorrentOpts { piece_kib: 64, trackers: Vec::new(), web_seeds: Vec::new(), private: false }
    }
}

/// What libtorrent says about the torrent it made.
#[derive(Clone, Debug, Deserialize)]
pub struct TorrentInfo {
    /// The .torrent file.
    #[serde(rename = "torrent")]
    pub path: PathBuf,
    /// The torrent's name: the shared file's or top folder's name.
    pub name: String,
    /// Lower-case hex v1 info hash.
    pub info_hash: String,
    pub magnet: String,
    pub piece_size: u64,
    pub num_pieces: u64,
    pub total_size: u64,
    pub files: Vec<TorrentFile>,
}

/// One file of a torrent, its path relative to the torrent's top folder ("/"-separated).
#[derive(Clone, Debug, Deserialize)]
pub struct TorrentFile {
    pub path: String,
    pub size: u64,
}

/// Creates a v1 torrent of `content` (a file, or a folder for a multi-file torrent) at `out`.
pub fn make_torrent(content: &Path, out: &Path, opts: &TorrentOpts) -> Result<TorrentInfo> {
    require_tool(PYTHON)?;
    let mut cmd = Command::new(PYTHON);
    cmd.arg(peer_script("make_torrent.py")?)
        .arg(content)
        .arg("-o")
        .arg(out)
        .arg("--piece-kib")
        .arg(opts.piece_kib.to_string());
    for url in &opts.trackers {
        cmd.arg("--tracker").arg(url);
    }
    for url in &opts.web_seeds {
        cmd.arg("--web-seed").arg(url);
    }
    if opts.private {
        cmd.arg("--private");
    }
    // hashing a few hundred MiB takes seconds; this bound only catches a hang
    let json = run_for_json("make_torrent.py", cmd, Duration::from_secs(300))?;
    serde_json::from_value(json.clone())
        .map_err(|e| Error::Setup(format!("unexpected make_torrent.py output {json}: {e}")))
}
