//! Extension-protocol payloads (the bytes inside [`crate::wire::Message::Extended`]):
//! the extended handshake (BEP 10), metadata exchange (BEP 9), peer exchange (BEP 11) and
//! `lt_donthave` (BEP 54).
//!
//! Ids: each side announces, in its extended handshake, the id it wants to *receive* each
//! extension under. So we send with the peer's ids ([`ExtendedHandshake::id_of`] on the peer's
//! handshake) and receive with ours ([`LocalExtension::from_id`]).
//!
//! Decoding is tolerant where BEP 10 asks for tolerance (unknown keys, optional keys of the wrong
//! type are ignored) and strict where a value would size an allocation or a loop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use thiserror::Error;

use crate::bencode::{self, BencodeError, Dict, Encoder, Limits};
use crate::metadata::{MAX_METADATA_SIZE, METADATA_PIECE_SIZE};

/// Extended message id of the extended handshake itself.
pub const HANDSHAKE_ID: u8 = 0;

/// Most extension names accepted in a handshake's `m` dictionary.
pub const MAX_EXTENSIONS: usize = 128;
/// Longest client name (`v`) kept; longer ones are truncated.
pub const MAX_CLIENT_NAME: usize = 256;
/// Most peers accepted in each of a PEX message's added and dropped lists (v4 and v6 together).
pub const MAX_PEX_PEERS: usize = 200;

/// Bounds for the small bencoded dictionaries of extension messages: generous for unknown keys,
/// small enough that a hostile message cannot make us allocate much.
const LIMITS: Limits = Limits { max_depth: 16, max_values: 10_000 };

/// Extension names as they appear in `m`.
pub const UT_METADATA: &str = "ut_metadata";
pub const UT_PEX: &str = "ut_pex";
pub const LT_DONTHAVE: &str = "lt_donthave";

/// The extensions we implement, with the ids we ask peers to use when sending them to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalExtension {
    Metadata,
    Pex,
    DontHave,
}

impl LocalExtension {
    pub const ALL: [LocalExtension; 3] =
        [LocalExtension::Metadata, LocalExtension::Pex, LocalExtension::DontHave];

    /// Our id for this extension (what peers put in `Extended { id }` when sending to us).
    pub const fn id(self) -> u8 {
        match self {
            LocalExtension::Metadata => 1,
            LocalExtension::Pex => 2,
            LocalExtension::DontHave => 3,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            LocalExtension::Metadata => UT_METADATA,
            LocalExtension::Pex => UT_PEX,
            LocalExtension::DontHave => LT_DONTHAVE,
        }
    }

    /// Which of our extensions an incoming extended message is (by the id we assigned).
    pub fn from_id(id: u8) -> Option<LocalExtension> {
        LocalExtension::ALL.into_iter().find(|ext| ext.id() == id)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExtensionError {
    #[error("extension message: {0}")]
    Bencode(#[from] BencodeError),
    #[error("extension message is not a dictionary")]
    NotADict,
    #[error("extended handshake lists {0} extensions (at most {MAX_EXTENSIONS})")]
    TooManyExtensions(usize),
    #[error("metadata size {0} is out of range (1..={MAX_METADATA_SIZE})")]
    MetadataSizeOutOfRange(i64),
    #[error("extension message lacks a valid `{0}`")]
    MissingKey(&'static str),
    #[error("ut_metadata message type {0} is unknown (BEP 9: ignore the message)")]
    UnknownMetadataType(i64),
    #[error("ut_metadata data of {0} bytes is larger than a metadata piece")]
    MetadataPieceTooLarge(usize),
    #[error("PEX `{key}` is {len} bytes, not a whole number of addresses")]
    BadCompactLength { key: &'static str, len: usize },
    #[error("PEX message lists {0} peers (at most {MAX_PEX_PEERS})")]
    TooManyPeers(usize),
    #[error("lt_donthave payload is {0} bytes, expected 4")]
    BadDontHaveLength(usize),
}

fn decode_dict(payload: &[u8]) -> Result<Dict<'_>, ExtensionError> {
    match bencode::decode_with(payload, LIMITS)? {
        bencode::Value::Dict(dict) => Ok(dict),
        _ => Err(ExtensionError::NotADict),
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 10 extended handshake

/// The extended handshake (extended message id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// The `m` dictionary: extension name and the id the sender wants to receive it under.
    /// Id 0 means the sender disables that extension.
    pub extensions: Vec<(String, u8)>,
    /// BEP 9: size of the info dictionary in bytes.
    pub metadata_size: Option<u64>,
    /// `v`: client name and version.
    pub client: Option<String>,
    /// `p`: the sender's listening port.
    pub listen_port: Option<u16>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub request_queue: Option<u32>,
    /// `yourip`: our address as the sender sees it.
    pub your_ip: Option<IpAddr>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl ExtendedHandshake {
    /// Our handshake: every [`LocalExtension`] under its id, plus what the caller knows.
    pub fn ours(metadata_size: Option<u64>, client: &str, listen_port: Option<u16>) -> Self {
        ExtendedHandshake {
            extensions: LocalExtension::ALL
                .into_iter()
                .map(|ext| (ext.name().to_owned(), ext.id()))
                .collect(),
            metadata_size,
            client: Some(client.to_owned()),
            listen_port,
            ..ExtendedHandshake::default()
        }
    }

    /// The id the sender of this handshake wants `name` sent under; `None` if it does not
    /// support it or disabled it (id 0).
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.extensions.iter().find(|(n, _)| n == name).map(|(_, id)| *id).filter(|id| *id != 0)
    }

    pub fn encode(&self) -> Bytes {
        let mut extensions: Vec<(&str, u8)> =
            self.extensions.iter().map(|(name, id)| (name.as_str(), *id)).collect();
        extensions.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        extensions.dedup_by(|a, b| a.0 == b.0);

        // Keys in byte order, as bencode requires.
        let mut enc = Encoder::new();
        enc.begin_dict();
        if let Some(ip) = self.ipv4 {
            enc.key(b"ipv4").bytes(&ip.octets());
        }
        if let Some(ip) = self.ipv6 {
            enc.key(b"ipv6").bytes(&ip.octets());
        }
        enc.key(b"m").begin_dict();
        for (name, id) in extensions {
            enc.key(name.as_bytes()).int(i64::from(id));
        }
        enc.end();
        if let Some(size) = self.metadata_size {
            enc.key(b"metadata_size").int(i64::try_from(size).unwrap_or(i64::MAX));
        }
        if let Some(port) = self.listen_port {
            enc.key(b"p").int(i64::from(port));
        }
        if let Some(reqq) = self.request_queue {
            enc.key(b"reqq").int(i64::from(reqq));
        }
        if let Some(client) = &self.client {
            enc.key(b"v").str(client);
        }
        match self.your_ip {
            Some(IpAddr::V4(ip)) => {
                enc.key(b"yourip").bytes(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                enc.key(b"yourip").bytes(&ip.octets());
            }
            None => {}
        }
        enc.end();
        Bytes::from(enc.finish())
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let dict = decode_dict(payload)?;
        let mut hs = ExtendedHandshake::default();

        if let Some(m) = dict.get_dict(b"m") {
            if m.len() > MAX_EXTENSIONS {
                return Err(ExtensionError::TooManyExtensions(m.len()));
            }
            hs.extensions = m
                .iter()
                .filter_map(|(name, value)| {
                    let name = std::str::from_utf8(name).ok()?;
                    let id = u8::try_from(value.as_int()?).ok()?;
                    Some((name.to_owned(), id))
                })
                .collect();
        }

        // A size of 0 is what some clients send when they have no metadata: treat as absent.
        hs.metadata_size = match dict.get_int(b"metadata_size") {
            None | Some(0) => None,
            Some(size) if size < 0 || size as u64 > MAX_METADATA_SIZE => {
                return Err(ExtensionError::MetadataSizeOutOfRange(size));
            }
            Some(size) => Some(size as u64),
        };

        hs.client = dict.get_bytes(b"v").map(|name| {
            let kept = name.get(..MAX_CLIENT_NAME).unwrap_or(name);
            String::from_utf8_lossy(kept).into_owned()
        });
        hs.listen_port = dict.get_int(b"p").and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
        hs.request_queue =
            dict.get_int(b"reqq").and_then(|q| u32::try_from(q).ok()).filter(|q| *q != 0);
        hs.your_ip = dict.get_bytes(b"yourip").and_then(ip_from_bytes);
        hs.ipv4 =
            dict.get_bytes(b"ipv4").and_then(|b| <[u8; 4]>::try_from(b).ok()).map(Ipv4Addr::from);
        hs.ipv6 =
            dict.get_bytes(b"ipv6").and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Ipv6Addr::from);
        Ok(hs)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes).ok().map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

// ---------------------------------------------------------------------------------------------
// BEP 9 ut_metadata

/// A `ut_metadata` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMessage {
    Request { piece: u32 },
    Data { piece: u32, total_size: u64, data: Bytes },
    Reject { piece: u32 },
}

mod metadata_type {
    pub const REQUEST: i64 = 0;
    pub const DATA: i64 = 1;
    pub const REJECT: i64 = 2;
}

impl MetadataMessage {
    /// Decodes a `ut_metadata` payload. `Data` shares `payload`'s memory. An unknown
    /// `msg_type` gives [`ExtensionError::UnknownMetadataType`], which BEP 9 says to ignore.
    pub fn decode(payload: &Bytes) -> Result<Self, ExtensionError> {
        let (value, header_len) = bencode::decode_prefix_with(payload, LIMITS)?;
        let dict = value.as_dict().ok_or(ExtensionError::NotADict)?;
        let msg_type = dict.get_int(b"msg_type").ok_or(ExtensionError::MissingKey("msg_type"))?;
        // No valid metadata has more than MAX_METADATA_SIZE / 16 KiB pieces; the exact bound is
        // the downloader's to check against the size it knows.
        let piece = dict
            .get_int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(ExtensionError::MissingKey("piece"))?;
        match msg_type {
            metadata_type::REQUEST => Ok(MetadataMessage::Request { piece }),
            metadata_type::REJECT => Ok(MetadataMessage::Reject { piece }),
            metadata_type::DATA => {
                let total_size =
                    dict.get_int(b"total_size").ok_or(ExtensionError::MissingKey("total_size"))?;
                if total_size <= 0 || total_size as u64 > MAX_METADATA_SIZE {
                    return Err(ExtensionError::MetadataSizeOutOfRange(total_size));
                }
                let data = payload.slice(header_len..);
                if data.len() > METADATA_PIECE_SIZE {
                    return Err(ExtensionError::MetadataPieceTooLarge(data.len()));
                }
                Ok(MetadataMessage::Data { piece, total_size: total_size as u64, data })
            }
            other => Err(ExtensionError::UnknownMetadataType(other)),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut enc = Encoder::new();
        enc.begin_dict();
        match self {
            MetadataMessage::Request { piece } => {
                enc.key(b"msg_type").int(metadata_type::REQUEST);
                enc.key(b"piece").int(i64::from(*piece));
            }
            MetadataMessage::Reject { piece } => {
                enc.key(b"msg_type").int(metadata_type::REJECT);
                enc.key(b"piece").int(i64::from(*piece));
            }
            MetadataMessage::Data { piece, total_size, data } => {
                enc.key(b"msg_type").int(metadata_type::DATA);
                enc.key(b"piece").int(i64::from(*piece));
                enc.key(b"total_size").int(i64::try_from(*total_size).unwrap_or(i64::MAX));
                enc.end();
                enc.raw(data);
                return Bytes::from(enc.finish());
            }
        }
        enc.end();
        Bytes::from(enc.finish())
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 54 lt_donthave

/// Payload of an `lt_donthave`: the piece the sender no longer has.
pub fn encode_dont_have(piece: u32) -> Bytes {
    Bytes::copy_from_slice(&piece.to_be_bytes())
}

pub fn decode_dont_have(payload: &[u8]) -> Result<u32, ExtensionError> {
    <[u8; 4]>::try_from(payload)
        .map(u32::from_be_bytes)
        .map_err(|_| ExtensionError::BadDontHaveLength(payload.len()))
}

// ---------------------------------------------------------------------------------------------
// BEP 11 ut_pex

/// Flags a PEX message attaches to each added peer.
pub mod pex_flag {
    pub const PREFERS_ENCRYPTION: u8 = 0x01;
    pub const SEED: u8 = 0x02;
    pub const UTP: u8 = 0x04;
    pub const HOLEPUNCH: u8 = 0x08;
    pub const REACHABLE: u8 = 0x10;
}

/// A `ut_pex` message. Decoding lists IPv4 peers before IPv6 ones, and encoding writes them
/// to the `added`/`added6` (and `dropped`/`dropped6`) keys by family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<SocketAddr>,
    /// One [`pex_flag`] byte per entry of `added` (0 when the sender gave none).
    pub added_flags: Vec<u8>,
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let dict = decode_dict(payload)?;
        let compact = |key: &'static str| dict.get_bytes(key.as_bytes()).unwrap_or_default();

        let added4 = compact("added");
        let added6 = compact("added6");
        let dropped4 = compact("dropped");
        let dropped6 = compact("dropped6");
        let added_count = peer_count(added4, "added", 6)? + peer_count(added6, "added6", 18)?;
        let dropped_count =
            peer_count(dropped4, "dropped", 6)? + peer_count(dropped6, "dropped6", 18)?;
        if added_count > MAX_PEX_PEERS || dropped_count > MAX_PEX_PEERS {
            return Err(ExtensionError::TooManyPeers(added_count.max(dropped_count)));
        }

        let mut added = Vec::with_capacity(added_count);
        added.extend(added4.chunks_exact(6).filter_map(socket_v4));
        added.extend(added6.chunks_exact(18).filter_map(socket_v6));
        // Missing or short flag strings are tolerated: the flags are only hints.
        let mut added_flags = Vec::with_capacity(added_count);
        added_flags.extend(flags_for(compact("added.f"), added4.len() / 6));
        added_flags.extend(flags_for(compact("added6.f"), added6.len() / 18));

        let mut dropped = Vec::with_capacity(dropped_count);
        dropped.extend(dropped4.chunks_exact(6).filter_map(socket_v4));
        dropped.extend(dropped6.chunks_exact(18).filter_map(socket_v6));
        Ok(PexMessage { added, added_flags, dropped })
    }

    pub fn encode(&self) -> Bytes {
        let flag_of = |index: usize| self.added_flags.get(index).copied().unwrap_or(0);
        let mut added4 = Vec::new();
        let mut added4_flags = Vec::new();
        let mut added6 = Vec::new();
        let mut added6_flags = Vec::new();
        for (index, addr) in self.added.iter().enumerate() {
            match addr {
                SocketAddr::V4(a) => {
                    put_compact_v4(&mut added4, a);
                    added4_flags.push(flag_of(index));
                }
                SocketAddr::V6(a) => {
                    put_compact_v6(&mut added6, a);
                    added6_flags.push(flag_of(index));
                }
            }
        }
        let mut dropped4 = Vec::new();
        let mut dropped6 = Vec::new();
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(a) => put_compact_v4(&mut dropped4, a),
                SocketAddr::V6(a) => put_compact_v6(&mut dropped6, a),
            }
        }

        let mut enc = Encoder::new();
        enc.begin_dict();
        enc.key(b"added").bytes(&added4);
        enc.key(b"added.f").bytes(&added4_flags);
        enc.key(b"added6").bytes(&added6);
        enc.key(b"added6.f").bytes(&added6_flags);
        enc.key(b"dropped").bytes(&dropped4);
        enc.key(b"dropped6").bytes(&dropped6);
        enc.end();
        Bytes::from(enc.finish())
    }
}

fn peer_count(compact: &[u8], key: &'static str, size: usize) -> Result<usize, ExtensionError> {
    if !compact.len().is_multiple_of(size) {
        return Err(ExtensionError::BadCompactLength { key, len: compact.len() });
    }
    Ok(compact.len() / size)
}

fn flags_for(flags: &[u8], count: usize) -> impl Iterator<Item = u8> + '_ {
    (0..count).map(move |i| flags.get(i).copied().unwrap_or(0))
}

fn socket_v4(chunk: &[u8]) -> Option<SocketAddr> {
    let [a, b, c, d, p0, p1] = <[u8; 6]>::try_from(chunk).ok()?;
    Some(SocketAddr::from(([a, b, c, d], u16::from_be_bytes([p0, p1]))))
}

fn socket_v6(chunk: &[u8]) -> Option<SocketAddr> {
    let bytes = <[u8; 18]>::try_from(chunk).ok()?;
    let (ip, port) = bytes.split_at(16);
    let ip = Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?);
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).ok()?);
    Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
}

fn put_compact_v4(out: &mut Vec<u8>, addr: &SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn put_compact_v6(out: &mut Vec<u8>, addr: &SocketAddrV6) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_handshake() -> ExtendedHandshake {
        ExtendedHandshake {
            extensions: vec![
                ("ut_pex".into(), 2),
                ("ut_metadata".into(), 1),
                ("lt_donthave".into(), 0),
            ],
            metadata_size: Some(31_235),
            client: Some("Shoal 0.1".into()),
            listen_port: Some(6881),
            request_queue: Some(500),
            your_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6: Some("2001:db8::1".parse().unwrap()),
        }
    }

    #[test]
    fn local_ids_are_distinct_and_nonzero() {
        for ext in LocalExtension::ALL {
            assert_ne!(ext.id(), HANDSHAKE_ID);
            assert_eq!(LocalExtension::from_id(ext.id()), Some(ext));
        }
        assert_eq!(LocalExtension::from_id(0), None);
        assert_eq!(LocalExtension::from_id(200), None);
    }

    #[test]
    fn handshake_round_trips() {
        let hs = full_handshake();
        let decoded = ExtendedHandshake::decode(&hs.encode()).unwrap();
        let mut expected = hs.clone();
        expected.extensions.sort();
        let mut got = decoded.clone();
        got.extensions.sort();
        assert_eq!(got, expected);
        assert_eq!(decoded.id_of(UT_METADATA), Some(1));
        assert_eq!(decoded.id_of(UT_PEX), Some(2));
        assert_eq!(decoded.id_of(LT_DONTHAVE), None, "id 0 means disabled");
        assert_eq!(decoded.id_of("ut_holepunch"), None);

        let v6 = ExtendedHandshake { your_ip: Some("::1".parse().unwrap()), ..Default::default() };
        assert_eq!(ExtendedHandshake::decode(&v6.encode()).unwrap(), v6);
    }

    #[test]
    fn ours_lists_our_extensions() {
        let hs = ExtendedHandshake::ours(Some(1000), "Shoal", Some(51413));
        for ext in LocalExtension::ALL {
            assert_eq!(hs.id_of(ext.name()), Some(ext.id()));
        }
        let encoded = hs.encode();
        assert!(encoded.starts_with(b"d1:md11:lt_donthavei3e11:ut_metadatai1e6:ut_pexi2ee"));
        assert_eq!(ExtendedHandshake::decode(&encoded).unwrap().metadata_size, Some(1000));
    }

    #[test]
    fn handshake_tolerates_unknown_keys_and_wrong_types() {
        let payload = b"d1:ei1e1:md11:ut_metadatai3e6:ut_pex3:bad4:nopei300e5:minusi-1ee\
            13:metadata_size2:xx1:pi70000e4:reqqi-5e1:vi7e6:yourip3:abc\
            12:complete_agoi-1e11:upload_onlyi1ee";
        let hs = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(hs.extensions, vec![("ut_metadata".to_owned(), 3)]);
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.listen_port, None);
        assert_eq!(hs.request_queue, None);
        assert_eq!(hs.client, None);
        assert_eq!(hs.your_ip, None);
        // `m` of the wrong type is ignored as well.
        assert_eq!(ExtendedHandshake::decode(b"d1:mi1ee").unwrap(), ExtendedHandshake::default());
        // Zero metadata size means "none"; latin-1 client names survive lossily.
        let hs = ExtendedHandshake::decode(b"d13:metadata_sizei0e1:v4:\xb5Tore").unwrap();
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.client.as_deref(), Some("\u{fffd}Tor"));
    }

    #[test]
    fn handshake_bounds() {
        let mut long = Encoder::new();
        long.begin_dict().key(b"v").bytes(&[b'x'; 1000]).end();
        let hs = ExtendedHandshake::decode(&long.finish()).unwrap();
        assert_eq!(hs.client.map(|c| c.len()), Some(MAX_CLIENT_NAME));

        let mut many = Encoder::new();
        many.begin_dict().key(b"m").begin_dict();
        let mut names: Vec<String> = (0..=MAX_EXTENSIONS).map(|i| format!("ext{i:04}")).collect();
        names.sort();
        for name in &names {
            many.key(name.as_bytes()).int(1);
        }
        many.end().end();
        assert_eq!(
            ExtendedHandshake::decode(&many.finish()),
            Err(ExtensionError::TooManyExtensions(MAX_EXTENSIONS + 1))
        );

        let too_big = format!("d13:metadata_sizei{}ee", MAX_METADATA_SIZE + 1);
        assert_eq!(
            ExtendedHandshake::decode(too_big.as_bytes()),
            Err(ExtensionError::MetadataSizeOutOfRange(MAX_METADATA_SIZE as i64 + 1))
        );
        assert_eq!(
            ExtendedHandshake::decode(b"d13:metadata_sizei-3ee"),
            Err(ExtensionError::MetadataSizeOutOfRange(-3))
        );
    }

    #[test]
    fn bad_handshake_dicts() {
        assert_eq!(ExtendedHandshake::decode(b"le"), Err(ExtensionError::NotADict));
        assert_eq!(ExtendedHandshake::decode(b"i1e"), Err(ExtensionError::NotADict));
        assert!(matches!(ExtendedHandshake::decode(b""), Err(ExtensionError::Bencode(_))));
        assert!(matches!(ExtendedHandshake::decode(b"d1:m"), Err(ExtensionError::Bencode(_))));
        assert!(matches!(ExtendedHandshake::decode(b"dexx"), Err(ExtensionError::Bencode(_))));
        let deep = format!("d1:x{}{}e", "l".repeat(40), "e".repeat(40));
        assert!(matches!(
            ExtendedHandshake::decode(deep.as_bytes()),
            Err(ExtensionError::Bencode(_))
        ));
    }

    #[test]
    fn metadata_messages_round_trip() {
        for msg in [
            MetadataMessage::Request { piece: 0 },
            MetadataMessage::Reject { piece: 7 },
            MetadataMessage::Data {
                piece: 2,
                total_size: 40_000,
                data: Bytes::from(vec![9; 7232]),
            },
            MetadataMessage::Data {
                piece: 0,
                total_size: 16384,
                data: Bytes::from(vec![1; 16384]),
            },
        ] {
            assert_eq!(MetadataMessage::decode(&msg.encode()), Ok(msg));
        }
        assert_eq!(
            &MetadataMessage::Request { piece: 3 }.encode()[..],
            b"d8:msg_typei0e5:piecei3ee"
        );
    }

    #[test]
    fn metadata_data_is_a_slice_of_the_payload() {
        let payload =
            MetadataMessage::Data { piece: 1, total_size: 20000, data: Bytes::from_static(b"RAW") }
                .encode();
        assert!(payload.ends_with(b"eRAW"));
        let Ok(MetadataMessage::Data { data, .. }) = MetadataMessage::decode(&payload) else {
            panic!("expected data");
        };
        assert_eq!(data.as_ptr() as usize, payload.as_ptr() as usize + payload.len() - 3);
    }

    #[test]
    fn bad_metadata_messages() {
        let decode = |raw: &'static [u8]| MetadataMessage::decode(&Bytes::from_static(raw));
        assert_eq!(
            decode(b"d8:msg_typei9e5:piecei0ee"),
            Err(ExtensionError::UnknownMetadataType(9))
        );
        assert_eq!(decode(b"d5:piecei0ee"), Err(ExtensionError::MissingKey("msg_type")));
        assert_eq!(decode(b"d8:msg_typei0ee"), Err(ExtensionError::MissingKey("piece")));
        assert_eq!(decode(b"d8:msg_typei0e5:piecei-1ee"), Err(ExtensionError::MissingKey("piece")));
        assert_eq!(
            decode(b"d8:msg_typei1e5:piecei0ee"),
            Err(ExtensionError::MissingKey("total_size"))
        );
        assert_eq!(
            decode(b"d8:msg_typei1e5:piecei0e10:total_sizei0ee"),
            Err(ExtensionError::MetadataSizeOutOfRange(0))
        );
        assert_eq!(
            decode(b"d8:msg_typei1e5:piecei0e10:total_sizei99999999999ee"),
            Err(ExtensionError::MetadataSizeOutOfRange(99_999_999_999))
        );
        assert_eq!(decode(b"li1ee"), Err(ExtensionError::NotADict));
        assert!(matches!(decode(b"d8:msg_type"), Err(ExtensionError::Bencode(_))));

        let mut big = MetadataMessage::Data { piece: 0, total_size: 50_000, data: Bytes::new() }
            .encode()
            .to_vec();
        big.extend_from_slice(&[0; METADATA_PIECE_SIZE + 1]);
        assert_eq!(
            MetadataMessage::decode(&Bytes::from(big)),
            Err(ExtensionError::MetadataPieceTooLarge(METADATA_PIECE_SIZE + 1))
        );
    }

    #[test]
    fn dont_have() {
        assert_eq!(decode_dont_have(&encode_dont_have(0x0a0b_0c0d)), Ok(0x0a0b_0c0d));
        assert_eq!(&encode_dont_have(1)[..], &[0, 0, 0, 1]);
        assert_eq!(decode_dont_have(&[0, 0, 1]), Err(ExtensionError::BadDontHaveLength(3)));
        assert_eq!(decode_dont_have(&[0; 5]), Err(ExtensionError::BadDontHaveLength(5)));
    }

    #[test]
    fn pex_round_trips_both_families() {
        let msg = PexMessage {
            added: vec![
                "1.2.3.4:6881".parse().unwrap(),
                "5.6.7.8:51413".parse().unwrap(),
                "[2001:db8::7]:6882".parse().unwrap(),
            ],
            added_flags: vec![pex_flag::SEED, 0, pex_flag::UTP | pex_flag::REACHABLE],
            dropped: vec!["9.9.9.9:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
        };
        let encoded = msg.encode();
        assert!(encoded.starts_with(b"d5:added12:\x01\x02\x03\x04\x1a\xe1"));
        assert_eq!(PexMessage::decode(&encoded), Ok(msg));
        assert_eq!(PexMessage::decode(&PexMessage::default().encode()), Ok(PexMessage::default()));
    }

    #[test]
    fn pex_tolerates_missing_flags_and_keys() {
        let decoded = PexMessage::decode(b"d5:added6:\x01\x02\x03\x04\x00\x50e").unwrap();
        assert_eq!(decoded.added, vec!["1.2.3.4:80".parse::<SocketAddr>().unwrap()]);
        assert_eq!(decoded.added_flags, vec![0]);
        assert!(decoded.dropped.is_empty());
        assert_eq!(PexMessage::decode(b"d5:addedi3ee").unwrap(), PexMessage::default());
    }

    #[test]
    fn bad_pex_messages() {
        assert_eq!(
            PexMessage::decode(b"d5:added5:12345e"),
            Err(ExtensionError::BadCompactLength { key: "added", len: 5 })
        );
        assert_eq!(
            PexMessage::decode(b"d8:dropped617:12345678901234567e"),
            Err(ExtensionError::BadCompactLength { key: "dropped6", len: 17 })
        );
        let mut enc = Encoder::new();
        enc.begin_dict()
            .key(b"added")
            .bytes(&[1; 6 * 150])
            .key(b"added6")
            .bytes(&[1; 18 * 51])
            .end();
        assert_eq!(PexMessage::decode(&enc.finish()), Err(ExtensionError::TooManyPeers(201)));
        assert_eq!(PexMessage::decode(b"le"), Err(ExtensionError::NotADict));
    }
}
