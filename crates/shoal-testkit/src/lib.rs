//! Test harness for Shoal's integration and interop tests (a dev-dependency only).
//!
//! It runs the software Shoal has to get along with: libtorrent, aria2 and Transmission as
//! peers, opentracker as a tracker, each through a driver script in `tests/peers` that speaks
//! one JSON event a line, and WebTorrent in headless Chromium ([`browser`], driven by
//! `tests/web/browser_peer.mjs`), which needs a private network namespace ([`netns`]), as do
//! the other WebRTC peers: WebTorrent in node and libtorrent 2.1 ([`lt21_seed`]). It has
//! no BitTorrent code of its own (web seed tests get nginx and a broken HTTP server from
//! [`webserver`]): what it checks is bytes on disk.
//!
//! ```no_run
//! use shoal_testkit::*;
//! # fn main() -> Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let data = dir.path().join("data");
//! payload_tree(&data.join("share"), 4 << 20, 64 << 10, 5, 1)?;
//! let torrent = make_torrent(&data.join("share"), &dir.path().join("share.torrent"), &TorrentOpts::default())?;
//!
//! let seed = lt_seed(&torrent.path, &data, &PeerOpts::default())?;
//! let out = dir.path().join("out");
//! let mut leech = lt_leech(&torrent.path, &out, &PeerOpts::default().connect(seed.addr()))?;
//! leech.wait_done(std::time::Duration::from_secs(60))?;
//! assert_trees_equal(&data.join("share"), &out.join("share"));
//! # Ok(()) }
//! ```
//!
//! Rules the harness keeps: every wait has a time bound, every process it starts is killed
//! by its own PID when its guard drops (and drivers exit when their stdin closes, so nothing
//! outlives a crashed test binary), and nothing asserts on wall-clock time.
//! Set `SHOAL_TEST_VERBOSE=1` to see the peers' output live, `SHOAL_SKIP_INTEROP=1` to skip
//! interop tests on a machine without the reference peers.

pub mod browser;
pub mod error;
pub mod media;
pub mod nat;
pub mod net;
pub mod netns;
pub mod paths;
pub mod payload;
pub mod peers;
pub mod process;
pub mod tls;
pub mod torrent;
pub mod tracker;
pub mod tree;
pub mod upnp;
pub mod webserver;

pub use browser::{
    browser_leech, browser_seed, browser_unavailable, node_leech, node_seed,
    node_webtorrent_unavailable, shoal_web_leech, shoal_web_seed, shoal_web_unavailable, web_pkg,
    BrowserOpts, BrowserPeer,
};
pub use error::{Error, Result};
pub use media::{
    make_mp4_moov_at_end, make_webm, moov_after_mdat, proc_memory, require_media_tools,
    run_bounded, top_level_boxes, Mp4Box, ProcMemory, ShoalStream, ToolOutput,
};
pub use net::{free_addr, free_port, loopback_ip};
pub use netns::{run_test_in_netns, Netns};
pub use paths::{
    lt21_python, peer_script, peers_dir, repo_root, require_tool, shoal_bin, skip_interop, PYTHON,
};
pub use payload::{payload, payload_tree, tree_layout, write_random_file};
pub use peers::{
    aria2_leech, aria2_seed, lt21_leech, lt21_seed, lt21_unavailable, lt_dht_node, lt_download,
    lt_leech, lt_seed, start_peer, transmission_leech, transmission_seed, DhtNode, Peer, PeerKind,
    PeerOpts, Role,
};
pub use process::{event_name, run_for_json, spawn_and_wait_for_json_line, ChildGuard};
pub use tls::{test_certificate, TestCert};
pub use torrent::{make_torrent, TorrentFile, TorrentInfo, TorrentOpts};
pub use tracker::{opentracker, opentracker_on, Tracker};
pub use tree::{
    assert_trees_equal, assert_trees_equal_allow_missing_empty, compare_trees, sha1_file,
    TreeCompare,
};

pub use webserver::{nginx, truncating_server, Nginx, NginxOpts, TruncatingServer};

/// Re-exported so that tests need not depend on it themselves.
pub use tempfile;
