//! Streaming: files of a torrent read while they download.
//!
//! - [`FileStream`]: a file as `AsyncRead + AsyncSeek`; its position becomes the torrent's
//!   deadlines (see `shoal_proto::streaming`), so what it reads next is fetched first.
//! - the bounded in-memory store ("stream, buffer, assemble, discard"): with
//!   [`crate::StorageTarget::BoundedMemory`], the torrent fetches only what readers wait for
//!   and drops pieces by the rules in [`shoal_proto::eviction`] (shared with the browser driver) to stay within its budget.

mod reader;
pub(crate) mod shared;

pub use reader::FileStream;
pub use shoal_proto::streaming::{DEFAULT_READAHEAD, MAX_READAHEAD};
