//! UDP trackers (BEP 15), both directions, plus the BEP 41 URL-data option.
//!
//! An exchange is a `connect` (which proves the client owns its source address and yields a
//! connection id valid for about a minute) followed by `announce` or `scrape` requests
//! carrying that id. Every packet carries a transaction id chosen by the client, which the
//! answer echoes. Lengths are checked exactly: a packet that is too short, too long or of the
//! wrong shape is an error, never a partial read.

mod request;
mod response;
mod url;

use thiserror::Error;

pub use request::{
    decode_request, encode_announce_request, encode_connect_request, encode_scrape_request,
    AnnounceRequestPacket, Request,
};
pub use response::{
    decode_response, encode_announce_response, encode_connect_response, encode_error,
    encode_scrape_response, Response,
};
pub use url::{parse_udp_url, UdpTrackerUrl, UdpUrlError};

/// The magic constant that opens every connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// A connection id is valid for this long after the tracker issued it (clients use it for one
/// minute; trackers accept it for two).
pub const CONNECTION_ID_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// BEP 15 says about 74 hashes fit a scrape; more would overflow a typical MTU.
pub const MAX_SCRAPE_HASHES: usize = 74;

pub const CONNECT_REQUEST_LEN: usize = 16;
pub const CONNECT_RESPONSE_LEN: usize = 16;
/// The announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;
/// The announce response header, before the peers.
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = 20;
pub const SCRAPE_REQUEST_HEADER_LEN: usize = 16;
pub const SCRAPE_RESPONSE_HEADER_LEN: usize = 8;
pub const ERROR_HEADER_LEN: usize = 8;

/// The `action` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Connect = 0,
    Announce = 1,
    Scrape = 2,
    Error = 3,
}

impl Action {
    fn from_u32(value: u32) -> Option<Action> {
        match value {
            0 => Some(Action::Connect),
            1 => Some(Action::Announce),
            2 => Some(Action::Scrape),
            3 => Some(Action::Error),
            _ => None,
        }
    }
}

/// Which address family the exchange runs over. It decides the peer format of announce
/// answers: 6-byte peers over IPv4, 18-byte peers over IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFamily {
    V4,
    V6,
}

impl AddressFamily {
    pub fn of(addr: &std::net::SocketAddr) -> AddressFamily {
        // An IPv4-mapped IPv6 address is reached over IPv4, and the tracker answers so.
        match addr {
            std::net::SocketAddr::V4(_) => AddressFamily::V4,
            std::net::SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => AddressFamily::V4,
            std::net::SocketAddr::V6(_) => AddressFamily::V6,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UdpError {
    #[error("UDP tracker packet too short: {len} bytes, need {need}")]
    Truncated { len: usize, need: usize },
    #[error("UDP tracker packet has a bad length: {len} bytes for {what}")]
    BadLength { len: usize, what: &'static str },
    #[error("UDP tracker connect request without the protocol magic")]
    BadMagic,
    #[error("UDP tracker packet has unknown action {0}")]
    UnknownAction(u32),
    #[error("UDP tracker announce has unknown event {0}")]
    UnknownEvent(u32),
    #[error("UDP tracker packet has malformed BEP 41 options")]
    BadOptions,
    #[error("UDP tracker sent {0} peers, more than the {max} we accept", max = crate::types::MAX_PEERS)]
    TooManyPeers(usize),
    #[error("UDP scrape of {0} torrents, more than the {MAX_SCRAPE_HASHES} allowed")]
    TooManyHashes(usize),
    #[error("UDP scrape of no torrent")]
    NoHashes,
}

/// A big-endian reader over a packet whose length was checked up front.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], UdpError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(UdpError::Truncated { len: self.buf.len(), need: n })?;
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], UdpError> {
        let bytes = self.bytes(N)?;
        // `bytes` has exactly N bytes.
        bytes.try_into().map_err(|_| UdpError::Truncated { len: bytes.len(), need: N })
    }

    pub(crate) fn u8(&mut self) -> Result<u8, UdpError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, UdpError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, UdpError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, UdpError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, UdpError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}
