//! WebSocket framing (RFC 6455 section 5), both directions: the server reads masked client
//! frames and writes unmasked ones; tests and load generators do the reverse. No extensions
//! are negotiated, so the reserved bits must be 0.

use thiserror::Error;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes we send.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("client frame is not masked")]
    Unmasked,
    #[error("control frame longer than 125 bytes or fragmented")]
    BadControl,
    #[error("frame of {0} bytes is longer than allowed")]
    TooLong(u64),
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLong(_) => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// A frame's header, once enough bytes arrived to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Reads a frame header from the start of `buf`; `Ok(None)` when more bytes are needed.
/// `require_mask` is true on the server (RFC 6455: clients must mask). Payloads longer than
/// `max_payload` are refused before any of them is buffered.
pub fn parse_header(
    buf: &[u8],
    require_mask: bool,
    max_payload: usize,
) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || b1 & 0x7f > 125 {
                return Err(FrameError::BadControl);
            }
        }
        other => return Err(FrameError::UnknownOpcode(other)),
    }
    let masked = b1 & 0x80 != 0;
    if require_mask && !masked {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > max_payload as u64 {
        return Err(FrameError::TooLong(len));
    }
    let mask = if masked {
        match buf.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(m) => {
                at += 4;
                Some(m)
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    // `len <= max_payload`, a usize.
    Ok(Some(Header { fin, opcode, mask, header_len: at, payload_len: len as usize }))
}

/// XORs a payload with its mask (applying it twice restores it).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one complete (FIN) frame; `mask` is for clients.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start + 4..], m);
    }
}

/// A close frame with a status code and a short reason.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = code.to_be_bytes().to_vec();
    // Control payloads are at most 125 bytes.
    payload.extend(reason.bytes().take(123));
    encode_frame(out, OP_CLOSE, &payload, mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_at_every_length_class() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, Some([1, 2, 3, 4]));
            let h = parse_header(&out, true, 1 << 20).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload_len), (true, OP_TEXT, len));
            let mut body = out[h.header_len..].to_vec();
            apply_mask(&mut body, h.mask.unwrap());
            assert_eq!(body, payload);
            // Every strict prefix of the header asks for more bytes.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&out[..cut], true, 1 << 20), Ok(None));
            }
        }
    }

    #[test]
    fn rejects_what_rfc_6455_forbids() {
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, OP_TEXT, b"hi", None);
        assert_eq!(parse_header(&unmasked, true, 100), Err(FrameError::Unmasked));
        assert!(parse_header(&unmasked, false, 100).unwrap().is_some());
        assert_eq!(parse_header(&[0xC1, 0x80], true, 100), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x83, 0x80], true, 100), Err(FrameError::UnknownOpcode(3)));
        assert_eq!(parse_header(&[0x09, 0x80], true, 100), Err(FrameError::BadControl));
        assert_eq!(parse_header(&[0x89, 0xFE], true, 100), Err(FrameError::BadControl));
        let huge = [0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(parse_header(&huge, true, 100), Err(FrameError::TooLong(u64::MAX)));
        let mut close = Vec::new();
        encode_close(&mut close, CLOSE_TOO_BIG, &"x".repeat(300), None);
        assert_eq!(close.len(), 2 + 125);
    }
}
