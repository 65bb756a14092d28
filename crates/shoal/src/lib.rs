//! Shoal's native engine: the tokio driver around the sans-IO core, with TCP transport, file
//! and memory storage, hashing off the I/O path, and HTTP/UDP tracker clients.
//!
//! Start with [`Session`]: add a torrent (from a `.torrent` or a magnet) and get a
//! [`TorrentHandle`] to watch its progress and wait for completion.

mod atomic_file;
mod clock;
pub mod dht;
mod disk;
pub mod fetch;
pub mod lsd;
mod mse;
mod peer_conn;
pub mod port_mapping;
pub mod rate;
pub mod resume;
mod session;
pub mod storage;
pub mod stream;
mod torrent_task;
pub mod tracker;
mod transport;
pub mod utp;
pub mod webrtc;
pub mod webseed;

pub use session::{
    AddTorrent, OpenFileError, Session, SessionConfig, SessionError, TorrentHandle, TorrentSource,
};
pub use shoal_proto::mse::EncryptionPolicy;
pub use shoal_proto::torrent::{WebSeedState, WebSeedStatus};
pub use stream::FileStream;
pub use torrent_task::{FilePriority, MemoryUsage, Phase, StorageTarget, TorrentStatus, Transport};
