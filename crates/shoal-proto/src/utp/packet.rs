//! uTP packets (BEP 29): the 20-byte header, the extension chain (only selective ACK means
//! anything; others are skipped), and the payload.

use thiserror::Error;

/// Header length; the payload (if any) follows it and the extensions.
pub const HEADER_LEN: usize = 20;
const VERSION: u8 = 1;
const EXT_NONE: u8 = 0;
const EXT_SELECTIVE_ACK: u8 = 1;
/// Longest selective ACK bitmask we send: 256 packets past the cumulative ACK. We read any
/// length (the length byte bounds it at 255): BEP 29 asks for a multiple of 4 bytes, but
/// libtorrent 2.0 sends as many bytes as its reorder buffer spans, often one.
pub const MAX_SACK_BYTES: usize = 32;
/// Most extensions a packet may chain before it is refused (real packets carry one or two).
const MAX_EXTENSIONS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// Carries payload.
    Data,
    /// The sender's last packet; it consumes a sequence number.
    Fin,
    /// An acknowledgement (no payload, no sequence number of its own).
    State,
    /// Tears the connection down at once.
    Reset,
    /// Opens a connection.
    Syn,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }

    fn nibble(self) -> u8 {
        match self {
            PacketType::Data => 0,
            PacketType::Fin => 1,
            PacketType::State => 2,
            PacketType::Reset => 3,
            PacketType::Syn => 4,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    #[error("{0} bytes is shorter than a uTP header")]
    TooShort(usize),
    #[error("uTP version {0} (only 1 exists)")]
    Version(u8),
    #[error("unknown uTP packet type {0}")]
    Type(u8),
    #[error("an extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("more than {MAX_EXTENSIONS} extensions")]
    TooManyExtensions,
}

/// A packet's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: PacketType,
    pub connection_id: u16,
    /// The sender's clock, microseconds (wrapping).
    pub timestamp: u32,
    /// The sender's last measured one-way delay of our packets to it, microseconds.
    pub timestamp_difference: u32,
    /// Bytes the sender can still take in.
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
}

/// A parsed packet, borrowing its payload from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// Selective ACK bitmask: bit `j` of byte `k` (least significant first) acknowledges
    /// `ack_nr + 2 + 8k + j`.
    pub selective_ack: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if datagram.len() < HEADER_LEN {
            return Err(PacketError::TooShort(datagram.len()));
        }
        let version = datagram[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let kind =
            PacketType::from_nibble(datagram[0] >> 4).ok_or(PacketError::Type(datagram[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([datagram[i], datagram[i + 1]]);
        let u32_at = |i: usize| {
            u32::from_be_bytes([datagram[i], datagram[i + 1], datagram[i + 2], datagram[i + 3]])
        };
        let header = Header {
            kind,
            connection_id: u16_at(2),
            timestamp: u32_at(4),
            timestamp_difference: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
        };
        let mut next = datagram[1];
        let mut at = HEADER_LEN;
        let mut selective_ack = None;
        let mut count = 0;
        while next != EXT_NONE {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions);
            }
            let [kind, len] = *datagram.get(at..at + 2).ok_or(PacketError::TruncatedExtension)?
            else {
                return Err(PacketError::TruncatedExtension);
            };
            let len = usize::from(len);
            let body = datagram.get(at + 2..at + 2 + len).ok_or(PacketError::TruncatedExtension)?;
            // An empty mask names nothing: as good as none.
            if next == EXT_SELECTIVE_ACK && len > 0 {
                selective_ack = Some(body);
            }
            next = kind;
            at += 2 + len;
        }
        Ok(Packet { header, selective_ack, payload: &datagram[at..] })
    }
}

impl Header {
    /// Appends the header, a selective ACK if given, and `payload` to `out`.
    pub fn encode(&self, selective_ack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
        out.push(self.kind.nibble() << 4 | VERSION);
        out.push(if selective_ack.is_some() { EXT_SELECTIVE_ACK } else { EXT_NONE });
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.timestamp_difference.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(mask) = selective_ack {
            out.push(EXT_NONE);
            // Callers build masks of at most MAX_SACK_BYTES.
            out.push(u8::try_from(mask.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(mask);
        }
        out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: PacketType) -> Header {
        Header {
            kind,
            connection_id: 0xbeef,
            timestamp: 1_000_000,
            timestamp_difference: 2500,
            wnd_size: 1 << 20,
            seq_nr: 65535,
            ack_nr: 7,
        }
    }

    #[test]
    fn round_trips_with_and_without_a_selective_ack() {
        for kind in [PacketType::Data, PacketType::Fin, PacketType::State, PacketType::Reset] {
            let mut bytes = Vec::new();
            header(kind).encode(None, b"payload", &mut bytes);
            let p = Packet::parse(&bytes).unwrap();
            assert_eq!(
                (p.header, p.selective_ack, p.payload),
                (header(kind), None, &b"payload"[..])
            );
        }
        let mut bytes = Vec::new();
        header(PacketType::State).encode(Some(&[1, 0, 0, 0x80]), &[], &mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN + 6);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.selective_ack, Some(&[1u8, 0, 0, 0x80][..]));
        assert!(p.payload.is_empty());
    }

    #[test]
    fn reads_a_syn_as_libtorrent_sends_it() {
        // type 4, version 1, no extension, conn id 0x1234, seq 1, ack 0
        let mut syn = vec![0x41, 0, 0x12, 0x34];
        syn.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0]);
        let p = Packet::parse(&syn).unwrap();
        assert_eq!(p.header.kind, PacketType::Syn);
        assert_eq!((p.header.connection_id, p.header.seq_nr, p.header.ack_nr), (0x1234, 1, 0));
        assert_eq!(p.header.wnd_size, 0x0010_0000);
    }

    #[test]
    fn reads_selective_acks_of_any_length_as_libtorrent_sends_them() {
        // libtorrent 2.0 sizes the mask to its reorder buffer: one byte for a packet or two
        // past the hole. Refusing it dropped every data packet carrying one, and the
        // connection stalled until libtorrent gave up.
        for mask in [&[0x01u8][..], &[0x03, 0x80, 0x01], &[0xff; 255]] {
            let mut bytes = Vec::new();
            header(PacketType::Data).encode(Some(mask), b"block", &mut bytes);
            let p = Packet::parse(&bytes).unwrap();
            assert_eq!((p.selective_ack, p.payload), (Some(mask), &b"block"[..]));
        }
        let mut empty = Vec::new();
        header(PacketType::State).encode(Some(&[]), &[], &mut empty);
        assert_eq!(Packet::parse(&empty).unwrap().selective_ack, None);
    }

    #[test]
    fn bad_packets_are_refused_with_a_reason() {
        assert_eq!(Packet::parse(&[0x41; 19]), Err(PacketError::TooShort(19)));
        let mut bytes = Vec::new();
        header(PacketType::Data).encode(None, &[], &mut bytes);
        let mut v2 = bytes.clone();
        v2[0] = 0x02;
        assert_eq!(Packet::parse(&v2), Err(PacketError::Version(2)));
        let mut t9 = bytes.clone();
        t9[0] = 0x91;
        assert_eq!(Packet::parse(&t9), Err(PacketError::Type(9)));
        let mut ext = bytes.clone();
        ext[1] = 1;
        ext.extend_from_slice(&[0, 8, 1, 2]);
        assert_eq!(Packet::parse(&ext), Err(PacketError::TruncatedExtension));
        // An unknown extension is skipped; a chain that never ends is cut off.
        let mut unknown = bytes.clone();
        unknown[1] = 7;
        unknown.extend_from_slice(&[0, 2, 9, 9, 0xaa]);
        assert_eq!(Packet::parse(&unknown).unwrap().payload, &[0xaa]);
        let mut chain = bytes;
        chain[1] = 7;
        for _ in 0..9 {
            chain.extend_from_slice(&[7, 0]);
        }
        assert_eq!(Packet::parse(&chain), Err(PacketError::TooManyExtensions));
    }
}
