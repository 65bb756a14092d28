//! Small identifiers shared by every part of the protocol.

use std::fmt;

/// A v1 info hash: SHA-1 of the bencoded `info` dictionary's original bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// Where we learnt of a peer: what users see counted by source (progress, `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerSource {
    /// Given by the user (`--peer`, a magnet's `x.pe`).
    Manual,
    Tracker,
    /// The Mainline DHT (BEP 5).
    Dht,
    /// Peer exchange (BEP 11) from a connected peer.
    Pex,
    /// Local service discovery (BEP 14).
    Lsd,
    /// It dialled us over TCP.
    Incoming,
    /// A WebRTC data channel (signalled through a WebSocket tracker).
    WebRtc,
}

impl PeerSource {
    /// The name in `--json` events and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            PeerSource::Manual => "manual",
            PeerSource::Tracker => "tracker",
            PeerSource::Dht => "dht",
            PeerSource::Pex => "pex",
            PeerSource::Lsd => "lsd",
            PeerSource::Incoming => "incoming",
            PeerSource::WebRtc => "webrtc",
        }
    }
}

/// A 20-byte peer id as sent in the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, the form users see in magnets and UIs.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(InfoHash(out))
    }
}

impl PeerId {
    /// A peer id in the Azureus style (`-SH0100-` followed by random bytes supplied by the
    /// caller, since the core has no randomness source of its own).
    pub fn generate(random: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-SH0100-");
        id[8..].copy_from_slice(&random);
        PeerId(id)
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", String::from_utf8_lossy(&self.0).escape_debug())
    }
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
        assert_eq!(InfoHash::from_hex(&"g0".repeat(20)), None);
    }
}

/// Identifies one peer connection within a torrent. Assigned by the torrent state machine;
/// never reused while the torrent lives, so a stale event for a closed connection can be told
/// apart from a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);
