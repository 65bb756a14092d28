//! Shoal's native engine: the tokio driver around the sans-IO core, with TCP transport, file
//! and memory storage, hashing off the I/O path, and HTTP/UDP tracker clients.

pub mod storage;
pub mod tracker;
