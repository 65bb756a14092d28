//! The peer wire protocol: handshake and length-prefixed messages (BEP 3), the Fast extension
//! (BEP 6), the extension-protocol envelope (BEP 10) and the DHT `port` message (BEP 5).
//!
//! Decoding is zero-copy for anything with a payload: a `piece` block, a `bitfield` and an
//! extended payload are `Bytes` slices of the driver's read buffer, so a 16 KiB block travels
//! from the socket to storage without being copied. Fixed-size messages are read in place and
//! cost no reference counting at all.
//!
//! The codec checks structure only (each message's length against its id). Whether a message is
//! allowed right now (a fast message without the fast bit, a `have` beyond the piece count, a
//! request nobody asked for) is the peer state machine's call.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::types::{InfoHash, PeerId};

/// The protocol string every handshake starts with (after its length byte, 19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Bytes in a full handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Bytes up to and including the info hash: enough to route an incoming connection.
pub const HANDSHAKE_PREFIX_LEN: usize = 48;

/// The largest frame (length prefix value) accepted by default: 1 MiB.
///
/// What has to fit: a `piece` with a 16 KiB block (16 393) or even a 128 KiB one, a `ut_metadata`
/// data message (16 KiB plus a small header), and above all the `bitfield` of a big torrent,
/// 1 + ceil(pieces / 8) bytes. 1 MiB covers 8 388 600 pieces, more than the 3.3 million an info
/// dictionary of [`crate::metadata::MAX_METADATA_SIZE`] can list. It also caps what one peer can
/// make us buffer. For torrents beyond that, see [`max_frame_for_pieces`].
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// A frame limit that fits the `bitfield` of a torrent with `num_pieces` pieces, and never less
/// than [`DEFAULT_MAX_FRAME`].
pub fn max_frame_for_pieces(num_pieces: u32) -> u32 {
    let bitfield_frame = 1 + num_pieces.div_ceil(8);
    bitfield_frame.max(DEFAULT_MAX_FRAME)
}

/// Message ids (the byte after the length prefix).
pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    #[error("handshake: not the BitTorrent protocol")]
    NotBitTorrent,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLong { len: u32, max: u32 },
    #[error("message id {id} with invalid length {len}")]
    BadLength { id: u8, len: u32 },
}

/// The reserved bits we set and test. Each is (byte index, mask) in the 8 reserved bytes.
mod reserved_bit {
    /// BEP 10: the extension protocol.
    pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 6: the Fast extension.
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5: the peer runs a DHT node (and may send `port`).
    pub const DHT: (usize, u8) = (7, 0x01);
}

/// The 68-byte handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

/// The first 48 bytes of a handshake: enough to find which torrent an incoming connection wants
/// before its peer id arrives (some clients wait for our info hash before sending theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakePrefix {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
}

impl Handshake {
    /// Our handshake: extension protocol and Fast extension advertised. Add DHT with
    /// [`Handshake::with_dht`] when the driver runs a DHT node.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        set_bit(&mut reserved, reserved_bit::EXTENSION_PROTOCOL);
        set_bit(&mut reserved, reserved_bit::FAST);
        Handshake { reserved, info_hash, peer_id }
    }

    pub fn with_dht(mut self) -> Self {
        set_bit(&mut self.reserved, reserved_bit::DHT);
        self
    }

    pub fn supports_extension_protocol(&self) -> bool {
        has_bit(&self.reserved, reserved_bit::EXTENSION_PROTOCOL)
    }

    pub fn supports_fast(&self) -> bool {
        has_bit(&self.reserved, reserved_bit::FAST)
    }

    pub fn supports_dht(&self) -> bool {
        has_bit(&self.reserved, reserved_bit::DHT)
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Parses a handshake from the start of `buf` (which the caller then advances by
    /// [`HANDSHAKE_LEN`]). `Ok(None)` means more bytes are needed. A wrong protocol string is
    /// reported as soon as the first differing byte is seen, so non-BitTorrent connections are
    /// dropped without waiting for 68 bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let Some(prefix) = HandshakePrefix::parse(buf)? else {
            return Ok(None);
        };
        let Some(peer_id) = buf.get(HANDSHAKE_PREFIX_LEN..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        Ok(Some(Handshake {
            reserved: prefix.reserved,
            info_hash: prefix.info_hash,
            peer_id: PeerId(to_array(peer_id)),
        }))
    }
}

impl HandshakePrefix {
    /// Parses the first [`HANDSHAKE_PREFIX_LEN`] bytes; `Ok(None)` if fewer have arrived.
    pub fn parse(buf: &[u8]) -> Result<Option<HandshakePrefix>, WireError> {
        let header_seen = buf.len().min(20);
        let mut expected = [0u8; 20];
        expected[0] = PROTOCOL.len() as u8;
        expected[1..].copy_from_slice(PROTOCOL);
        if buf.get(..header_seen) != expected.get(..header_seen) {
            return Err(WireError::NotBitTorrent);
        }
        let (Some(reserved), Some(info_hash)) = (buf.get(20..28), buf.get(28..48)) else {
            return Ok(None);
        };
        Ok(Some(HandshakePrefix {
            reserved: to_array(reserved),
            info_hash: InfoHash(to_array(info_hash)),
        }))
    }
}

fn set_bit(reserved: &mut [u8; 8], (byte, mask): (usize, u8)) {
    if let Some(b) = reserved.get_mut(byte) {
        *b |= mask;
    }
}

fn has_bit(reserved: &[u8; 8], (byte, mask): (usize, u8)) -> bool {
    reserved.get(byte).is_some_and(|b| b & mask != 0)
}

/// Copies a slice whose length the caller has already fixed into an array.
fn to_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = slice.len().min(N);
    out[..n].copy_from_slice(&slice[..n]);
    out
}

/// A block: `length` bytes at `offset` within `piece`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub offset: u32,
    pub length: u32,
}

/// A peer wire message.
///
/// Messages with an id this codec does not know decode to [`Message::Unknown`] rather than an
/// error: BEP 3 asks peers to ignore them, and real clients send some (libtorrent sends the
/// BEP 52 hash messages, ids 21-23, to v2 peers). The state machine ignores `Unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// The raw bitfield; validate it with [`crate::Bitfield::from_bytes`] once the piece count
    /// is known (a magnet download may not know it yet).
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    /// BEP 10: `id` 0 is the extended handshake, others are the ids *we* assigned in ours.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// A well-framed message with an unknown id; its payload has been skipped. Encoding it
    /// writes the id with an empty payload.
    Unknown {
        id: u8,
    },
}

impl Message {
    /// Bytes this message takes on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the framed message to `out`. A `piece` is copied; to send a block without
    /// copying it, write [`encode_piece_header`] and then the block's bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u32(self.body_len() as u32);
        match self {
            Message::KeepAlive => {}
            Message::Choke => out.put_u8(id::CHOKE),
            Message::Unchoke => out.put_u8(id::UNCHOKE),
            Message::Interested => out.put_u8(id::INTERESTED),
            Message::NotInterested => out.put_u8(id::NOT_INTERESTED),
            Message::HaveAll => out.put_u8(id::HAVE_ALL),
            Message::HaveNone => out.put_u8(id::HAVE_NONE),
            Message::Have(piece) => put_id_u32(out, id::HAVE, *piece),
            Message::Suggest(piece) => put_id_u32(out, id::SUGGEST, *piece),
            Message::AllowedFast(piece) => put_id_u32(out, id::ALLOWED_FAST, *piece),
            Message::Bitfield(bits) => {
                out.put_u8(id::BITFIELD);
                out.put_slice(bits);
            }
            Message::Request(block) => put_block(out, id::REQUEST, block),
            Message::Cancel(block) => put_block(out, id::CANCEL, block),
            Message::Reject(block) => put_block(out, id::REJECT, block),
            Message::Piece { piece, offset, data } => {
                out.put_u8(id::PIECE);
                out.put_u32(*piece);
                out.put_u32(*offset);
                out.put_slice(data);
            }
            Message::Port(port) => {
                out.put_u8(id::PORT);
                out.put_u16(*port);
            }
            Message::Extended { id: ext_id, payload } => {
                out.put_u8(id::EXTENDED);
                out.put_u8(*ext_id);
                out.put_slice(payload);
            }
            Message::Unknown { id } => out.put_u8(*id),
        }
    }

    /// The value of the length prefix.
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone
            | Message::Unknown { .. } => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Port(_) => 3,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Bitfield(bits) => 1 + bits.len(),
            Message::Piece { data, .. } => PIECE_HEADER_BODY + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
        }
    }
}

/// Id, piece and offset: the part of a `piece` body before the block.
const PIECE_HEADER_BODY: usize = 9;
/// Bytes [`encode_piece_header`] writes.
pub const PIECE_HEADER_LEN: usize = 4 + PIECE_HEADER_BODY;

/// Writes the 13-byte header of a `piece` message whose `data_len` block bytes the caller sends
/// right after (e.g. with a vectored write straight from the storage's buffer).
pub fn encode_piece_header(piece: u32, offset: u32, data_len: u32, out: &mut BytesMut) {
    out.reserve(PIECE_HEADER_LEN);
    out.put_u32(data_len.saturating_add(PIECE_HEADER_BODY as u32));
    out.put_u8(id::PIECE);
    out.put_u32(piece);
    out.put_u32(offset);
}

fn put_id_u32(out: &mut BytesMut, message_id: u8, value: u32) {
    out.put_u8(message_id);
    out.put_u32(value);
}

fn put_block(out: &mut BytesMut, message_id: u8, block: &BlockRef) {
    out.put_u8(message_id);
    out.put_u32(block.piece);
    out.put_u32(block.offset);
    out.put_u32(block.length);
}

/// Takes framed messages off the front of a read buffer.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder rejecting frames longer than `max_len` bytes (length prefix value).
    pub fn new(max_len: u32) -> Self {
        FrameDecoder { max_len }
    }

    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Raises (or lowers) the limit, e.g. once the metadata of a huge torrent is known.
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// Removes one complete message from the front of `buf`. `Ok(None)`: the frame is not all
    /// there yet (`buf` is untouched, and has been reserved room for the rest of the frame so
    /// the next read can complete it). An oversized length prefix is refused as soon as its
    /// 4 bytes arrive. After an error the stream is unusable and the connection should close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(to_array(prefix));
        if len > self.max_len {
            return Err(WireError::FrameTooLong { len, max: self.max_len });
        }
        // Saturating: on 32-bit targets a limit near u32::MAX must not overflow.
        let frame_end = (len as usize).saturating_add(4);
        if buf.len() < frame_end {
            buf.reserve(frame_end - buf.len());
            return Ok(None);
        }
        if len == 0 {
            buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        let message_id = buf.get(4).copied().unwrap_or_default();
        let bad_length = WireError::BadLength { id: message_id, len };

        // Messages with a payload hand it out as a reference-counted slice of `buf`.
        match message_id {
            id::PIECE => {
                if len < 1 + 8 {
                    return Err(bad_length);
                }
                let header: [u8; 8] = fixed(buf.get(5..13).unwrap_or_default(), bad_length)?;
                buf.advance(PIECE_HEADER_LEN);
                let data = buf.split_to(frame_end - PIECE_HEADER_LEN).freeze();
                return Ok(Some(Message::Piece {
                    piece: u32::from_be_bytes(to_array(&header[..4])),
                    offset: u32::from_be_bytes(to_array(&header[4..])),
                    data,
                }));
            }
            id::BITFIELD => {
                buf.advance(4 + 1);
                let bits = buf.split_to(frame_end - 5).freeze();
                return Ok(Some(Message::Bitfield(bits)));
            }
            id::EXTENDED => {
                if len < 1 + 1 {
                    return Err(bad_length);
                }
                let [ext_id] = fixed(buf.get(5..6).unwrap_or_default(), bad_length)?;
                buf.advance(4 + 1 + 1);
                let payload = buf.split_to(frame_end - 6).freeze();
                return Ok(Some(Message::Extended { id: ext_id, payload }));
            }
            _ => {}
        }

        // Fixed-size messages are read in place.
        let body = buf.get(5..frame_end).unwrap_or_default();
        let message = match message_id {
            id::CHOKE => fixed::<0>(body, bad_length).map(|_| Message::Choke)?,
            id::UNCHOKE => fixed::<0>(body, bad_length).map(|_| Message::Unchoke)?,
            id::INTERESTED => fixed::<0>(body, bad_length).map(|_| Message::Interested)?,
            id::NOT_INTERESTED => fixed::<0>(body, bad_length).map(|_| Message::NotInterested)?,
            id::HAVE_ALL => fixed::<0>(body, bad_length).map(|_| Message::HaveAll)?,
            id::HAVE_NONE => fixed::<0>(body, bad_length).map(|_| Message::HaveNone)?,
            id::HAVE => Message::Have(u32::from_be_bytes(fixed(body, bad_length)?)),
            id::SUGGEST => Message::Suggest(u32::from_be_bytes(fixed(body, bad_length)?)),
            id::ALLOWED_FAST => Message::AllowedFast(u32::from_be_bytes(fixed(body, bad_length)?)),
            id::PORT => Message::Port(u16::from_be_bytes(fixed(body, bad_length)?)),
            id::REQUEST => Message::Request(block_ref(fixed(body, bad_length)?)),
            id::CANCEL => Message::Cancel(block_ref(fixed(body, bad_length)?)),
            id::REJECT => Message::Reject(block_ref(fixed(body, bad_length)?)),
            other => Message::Unknown { id: other },
        };
        buf.advance(frame_end);
        Ok(Some(message))
    }
}

/// The body as a fixed-size array, or the length error if it is not exactly `N` bytes.
fn fixed<const N: usize>(body: &[u8], bad_length: WireError) -> Result<[u8; N], WireError> {
    body.try_into().map_err(|_| bad_length)
}

fn block_ref(body: [u8; 12]) -> BlockRef {
    BlockRef {
        piece: u32::from_be_bytes(to_array(&body[0..4])),
        offset: u32::from_be_bytes(to_array(&body[4..8])),
        length: u32::from_be_bytes(to_array(&body[8..12])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_handshake() -> Handshake {
        Handshake::new(InfoHash([0x11; 20]), PeerId(*b"-SH0100-abcdefghijkl"))
    }

    fn all_messages() -> Vec<Message> {
        let block = BlockRef { piece: 7, offset: 16384, length: 16384 };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(0xdead_beef),
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Bitfield(Bytes::new()),
            Message::Request(block),
            Message::Piece { piece: 3, offset: 32768, data: Bytes::from(vec![0xab; 16384]) },
            Message::Piece { piece: 0, offset: 0, data: Bytes::new() },
            Message::Cancel(block),
            Message::Port(6881),
            Message::Suggest(12),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(block),
            Message::AllowedFast(99),
            Message::Extended { id: 0, payload: Bytes::from_static(b"d1:md6:ut_pexi2eee") },
            Message::Extended { id: 3, payload: Bytes::new() },
            Message::Unknown { id: 21 },
        ]
    }

    fn encode(message: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        message.encode(&mut out);
        out
    }

    #[test]
    fn handshake_round_trip_and_bits() {
        let hs = sample_handshake();
        assert!(hs.supports_extension_protocol());
        assert!(hs.supports_fast());
        assert!(!hs.supports_dht());
        assert!(hs.with_dht().supports_dht());
        let bytes = hs.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], PROTOCOL);
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x04);
        assert_eq!(Handshake::parse(&bytes), Ok(Some(hs)));
        // Extra bytes after the handshake (the first message) are not its business.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(Handshake::parse(&longer), Ok(Some(hs)));
    }

    #[test]
    fn plain_handshake_has_no_extensions() {
        let mut bytes = sample_handshake().encode();
        bytes[20..28].fill(0);
        let hs = Handshake::parse(&bytes).unwrap().unwrap();
        assert!(!hs.supports_extension_protocol() && !hs.supports_fast() && !hs.supports_dht());
    }

    #[test]
    fn handshake_arrives_byte_by_byte() {
        let hs = sample_handshake();
        let bytes = hs.encode();
        for n in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::parse(&bytes[..n]), Ok(None), "at {n} bytes");
            let prefix = HandshakePrefix::parse(&bytes[..n]).unwrap();
            assert_eq!(prefix.is_some(), n >= HANDSHAKE_PREFIX_LEN, "at {n} bytes");
        }
        let prefix = HandshakePrefix::parse(&bytes[..HANDSHAKE_PREFIX_LEN]).unwrap().unwrap();
        assert_eq!(prefix.info_hash, hs.info_hash);
        assert_eq!(prefix.reserved, hs.reserved);
    }

    #[test]
    fn wrong_protocol_is_refused_early() {
        assert_eq!(Handshake::parse(b"\x13"), Ok(None));
        assert_eq!(Handshake::parse(b"GET / HTTP/1.1\r\n"), Err(WireError::NotBitTorrent));
        assert_eq!(Handshake::parse(b"\x13BitTorrent protocoX"), Err(WireError::NotBitTorrent));
        assert_eq!(Handshake::parse(b"\x12BitTorrent protocol"), Err(WireError::NotBitTorrent));
        let mut bytes = sample_handshake().encode();
        bytes[5] = b't';
        assert_eq!(Handshake::parse(&bytes), Err(WireError::NotBitTorrent));
        assert_eq!(HandshakePrefix::parse(&bytes[..6]), Err(WireError::NotBitTorrent));
    }

    #[test]
    fn every_message_round_trips() {
        let mut decoder = FrameDecoder::default();
        for message in all_messages() {
            let mut buf = encode(&message);
            assert_eq!(buf.len(), message.encoded_len(), "{message:?}");
            assert_eq!(decoder.decode(&mut buf), Ok(Some(message.clone())));
            assert!(buf.is_empty(), "{message:?} left bytes behind");
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(&encode(&Message::KeepAlive)[..], &[0, 0, 0, 0]);
        assert_eq!(&encode(&Message::Interested)[..], &[0, 0, 0, 1, 2]);
        assert_eq!(&encode(&Message::Have(0x0102_0304))[..], &[0, 0, 0, 5, 4, 1, 2, 3, 4]);
        assert_eq!(&encode(&Message::Port(0x1ae1))[..], &[0, 0, 0, 3, 9, 0x1a, 0xe1]);
        assert_eq!(
            &encode(&Message::Request(BlockRef { piece: 1, offset: 2, length: 3 }))[..],
            &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(&encode(&Message::HaveAll)[..], &[0, 0, 0, 1, 14]);
        assert_eq!(
            &encode(&Message::Extended { id: 2, payload: Bytes::from_static(b"de") })[..],
            &[0, 0, 0, 4, 20, 2, b'd', b'e']
        );
    }

    #[test]
    fn stream_decodes_fed_byte_by_byte() {
        let messages = all_messages();
        let mut stream = BytesMut::new();
        for m in &messages {
            m.encode(&mut stream);
        }
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in stream.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                decoded.push(m);
            }
        }
        assert_eq!(decoded, messages);
        assert!(buf.is_empty());
    }

    #[test]
    fn piece_data_shares_the_read_buffer() {
        let data = vec![7u8; 16384];
        let mut buf = BytesMut::new();
        encode_piece_header(5, 16384, data.len() as u32, &mut buf);
        assert_eq!(buf.len(), PIECE_HEADER_LEN);
        buf.extend_from_slice(&data);
        Message::Have(1).encode(&mut buf);
        // The header path and the full encoder agree.
        let whole =
            encode(&Message::Piece { piece: 5, offset: 16384, data: Bytes::from(data.clone()) });
        assert_eq!(&buf[..whole.len()], &whole[..]);

        let base = buf.as_ptr() as usize;
        let mut decoder = FrameDecoder::default();
        let Some(Message::Piece { piece, offset, data: got }) = decoder.decode(&mut buf).unwrap()
        else {
            panic!("expected a piece");
        };
        assert_eq!((piece, offset), (5, 16384));
        assert_eq!(got, data);
        assert_eq!(got.as_ptr() as usize, base + PIECE_HEADER_LEN, "block was copied");
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Have(1))));
    }

    #[test]
    fn oversized_frame_is_refused_from_its_prefix() {
        let mut decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 101][..]);
        assert_eq!(decoder.decode(&mut buf), Err(WireError::FrameTooLong { len: 101, max: 100 }));
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(WireError::FrameTooLong { len: u32::MAX, max: DEFAULT_MAX_FRAME })
        );
        // At the limit is fine; three prefix bytes are just "incomplete".
        let mut buf = BytesMut::from(&[0u8, 0, 0, 100, 5][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= 104, "room reserved for the rest of the frame");
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        decoder.set_max_len(200);
        assert_eq!(decoder.max_len(), 200);
    }

    #[test]
    fn frame_limit_covers_big_bitfields() {
        assert_eq!(max_frame_for_pieces(1000), DEFAULT_MAX_FRAME);
        assert_eq!(max_frame_for_pieces(16_000_000), 2_000_001);
        assert_eq!(max_frame_for_pieces(u32::MAX), 1 + u32::MAX.div_ceil(8));
        // A default-limit bitfield frame for the largest piece count it claims to cover.
        assert!(8_388_600u32.div_ceil(8) < DEFAULT_MAX_FRAME);
        assert!(PIECE_HEADER_BODY as u32 + 128 * 1024 <= DEFAULT_MAX_FRAME);
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let cases: &[(u8, &[usize])] = &[
            (id::CHOKE, &[1, 4]),
            (id::UNCHOKE, &[1]),
            (id::INTERESTED, &[1]),
            (id::NOT_INTERESTED, &[2]),
            (id::HAVE, &[0, 3, 5]),
            (id::REQUEST, &[0, 11, 13]),
            (id::PIECE, &[0, 7]),
            (id::CANCEL, &[11, 13]),
            (id::PORT, &[0, 1, 3]),
            (id::SUGGEST, &[3]),
            (id::HAVE_ALL, &[1]),
            (id::HAVE_NONE, &[1]),
            (id::REJECT, &[4]),
            (id::ALLOWED_FAST, &[8]),
            (id::EXTENDED, &[0]),
        ];
        for &(message_id, body_lens) in cases {
            for &body_len in body_lens {
                let len = 1 + body_len as u32;
                let mut buf = BytesMut::new();
                buf.put_u32(len);
                buf.put_u8(message_id);
                buf.put_bytes(0, body_len);
                // A valid message behind it must not be mistaken for the missing body.
                Message::Have(1).encode(&mut buf);
                assert_eq!(
                    FrameDecoder::default().decode(&mut buf),
                    Err(WireError::BadLength { id: message_id, len }),
                    "id {message_id} with {body_len} body bytes"
                );
            }
        }
    }

    #[test]
    fn unknown_ids_are_skipped_whole() {
        let mut buf = BytesMut::new();
        buf.put_u32(6);
        buf.put_u8(21);
        buf.put_slice(b"hello");
        Message::Unchoke.encode(&mut buf);
        let mut decoder = FrameDecoder::default();
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Unknown { id: 21 })));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Unchoke)));
        assert!(buf.is_empty());
    }
}
