//! Client-to-tracker packets: encoded by clients, decoded by the server.

use std::net::Ipv4Addr;

use shoal_proto::{InfoHash, PeerId};

use super::{
    Action, Reader, UdpError, ANNOUNCE_REQUEST_LEN, CONNECT_REQUEST_LEN, MAX_SCRAPE_HASHES,
    PROTOCOL_ID, SCRAPE_REQUEST_HEADER_LEN,
};
use crate::types::{AnnounceEvent, AnnounceRequest};

/// BEP 41 option types.
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_URL_DATA: u8 = 2;

/// A decoded client packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Connect { transaction_id: u32 },
    Announce(AnnounceRequestPacket),
    Scrape { connection_id: u64, transaction_id: u32, info_hashes: Vec<InfoHash> },
}

/// An announce as it travels over UDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequestPacket {
    pub connection_id: u64,
    pub transaction_id: u32,
    /// The announce itself (`compact` is always true over UDP, `tracker_id` always `None`; a
    /// `left` of [`crate::LEFT_WHEN_UNKNOWN`] decodes as known).
    pub request: AnnounceRequest,
    /// The `IP address` field: the client's claim of its own address. 0 (the default) means
    /// "use the packet's source".
    pub ip: Option<Ipv4Addr>,
    /// BEP 41 URL data (the path and query of the tracker URL), concatenated.
    pub url_data: Vec<u8>,
}

/// The 16-byte connect request.
pub fn encode_connect_request(transaction_id: u32) -> [u8; CONNECT_REQUEST_LEN] {
    let mut out = [0u8; CONNECT_REQUEST_LEN];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&(Action::Connect as u32).to_be_bytes());
    out[12..].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// An announce request, followed by BEP 41 URL data when `url_data` is not empty (split in
/// options of at most 255 bytes).
pub fn encode_announce_request(
    connection_id: u64,
    transaction_id: u32,
    req: &AnnounceRequest,
    url_data: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(ANNOUNCE_REQUEST_LEN + url_data.len() + url_data.len() / 255 * 2 + 2);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&(Action::Announce as u32).to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&req.info_hash.0);
    out.extend_from_slice(&req.peer_id.0);
    out.extend_from_slice(&req.downloaded.to_be_bytes());
    out.extend_from_slice(&req.left_on_wire().to_be_bytes());
    out.extend_from_slice(&req.uploaded.to_be_bytes());
    out.extend_from_slice(&event_code(req.event).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // IP: let the tracker use the source address
    out.extend_from_slice(&req.key.to_be_bytes());
    let num_want = match req.num_want {
        Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
        None => -1,
    };
    out.extend_from_slice(&num_want.to_be_bytes());
    out.extend_from_slice(&req.port.to_be_bytes());
    for chunk in url_data.chunks(255) {
        out.push(OPTION_URL_DATA);
        out.push(chunk.len() as u8); // chunks(255) bounds it
        out.extend_from_slice(chunk);
    }
    out
}

/// A scrape request for 1 to [`MAX_SCRAPE_HASHES`] torrents.
pub fn encode_scrape_request(
    connection_id: u64,
    transaction_id: u32,
    info_hashes: &[InfoHash],
) -> Result<Vec<u8>, UdpError> {
    check_hash_count(info_hashes.len())?;
    let mut out = Vec::with_capacity(SCRAPE_REQUEST_HEADER_LEN + 20 * info_hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&(Action::Scrape as u32).to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for hash in info_hashes {
        out.extend_from_slice(&hash.0);
    }
    Ok(out)
}

/// Decodes a client packet (server side).
pub fn decode_request(buf: &[u8]) -> Result<Request, UdpError> {
    let mut r = Reader::new(buf);
    let connection_id = r.u64()?;
    let action = r.u32()?;
    let transaction_id = r.u32()?;
    match Action::from_u32(action) {
        Some(Action::Connect) => {
            if connection_id != PROTOCOL_ID {
                return Err(UdpError::BadMagic);
            }
            if buf.len() != CONNECT_REQUEST_LEN {
                return Err(UdpError::BadLength { len: buf.len(), what: "a connect request" });
            }
            Ok(Request::Connect { transaction_id })
        }
        Some(Action::Announce) => {
            if buf.len() < ANNOUNCE_REQUEST_LEN {
                return Err(UdpError::Truncated { len: buf.len(), need: ANNOUNCE_REQUEST_LEN });
            }
            let info_hash = InfoHash(r.array()?);
            let peer_id = PeerId(r.array()?);
            let downloaded = r.u64()?;
            let left = r.u64()?;
            let uploaded = r.u64()?;
            let event = match r.u32()? {
                0 => AnnounceEvent::None,
                1 => AnnounceEvent::Completed,
                2 => AnnounceEvent::Started,
                3 => AnnounceEvent::Stopped,
                other => return Err(UdpError::UnknownEvent(other)),
            };
            let ip = Some(Ipv4Addr::from(r.u32()?)).filter(|ip| !ip.is_unspecified());
            let key = r.u32()?;
            let num_want = u32::try_from(r.i32()?).ok();
            let port = r.u16()?;
            let url_data = decode_options(r.rest())?;
            Ok(Request::Announce(AnnounceRequestPacket {
                connection_id,
                transaction_id,
                request: AnnounceRequest {
                    info_hash,
                    peer_id,
                    port,
                    uploaded,
                    downloaded,
                    left: Some(left),
                    event,
                    num_want,
                    key,
                    compact: true,
                    tracker_id: None,
                },
                ip,
                url_data,
            }))
        }
        Some(Action::Scrape) => {
            let body = r.rest();
            if !body.len().is_multiple_of(20) {
                return Err(UdpError::BadLength { len: buf.len(), what: "a scrape request" });
            }
            check_hash_count(body.len() / 20)?;
            let info_hashes = body
                .chunks_exact(20)
                .map(|c| c.try_into().map(InfoHash))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| UdpError::BadLength { len: buf.len(), what: "a scrape request" })?;
            Ok(Request::Scrape { connection_id, transaction_id, info_hashes })
        }
        Some(Action::Error) | None => Err(UdpError::UnknownAction(action)),
    }
}

fn check_hash_count(n: usize) -> Result<(), UdpError> {
    match n {
        0 => Err(UdpError::NoHashes),
        n if n > MAX_SCRAPE_HASHES => Err(UdpError::TooManyHashes(n)),
        _ => Ok(()),
    }
}

fn event_code(event: AnnounceEvent) -> u32 {
    match event {
        AnnounceEvent::None => 0,
        AnnounceEvent::Completed => 1,
        AnnounceEvent::Started => 2,
        AnnounceEvent::Stopped => 3,
    }
}

/// Reads BEP 41 options: URL data chunks are concatenated, NOPs skipped, unknown options
/// (which all carry a length byte) skipped, and the end option stops the scan.
fn decode_options(buf: &[u8]) -> Result<Vec<u8>, UdpError> {
    let mut r = Reader::new(buf);
    let mut url_data = Vec::new();
    while let Ok(kind) = r.u8() {
        match kind {
            OPTION_END => break,
            OPTION_NOP => continue,
            kind => {
                let len = r.u8().map_err(|_| UdpError::BadOptions)?;
                let data = r.bytes(usize::from(len)).map_err(|_| UdpError::BadOptions)?;
                if kind == OPTION_URL_DATA {
                    url_data.extend_from_slice(data);
                }
            }
        }
    }
    Ok(url_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> AnnounceRequest {
        AnnounceRequest {
            uploaded: 3,
            downloaded: 1,
            left: Some(2),
            event: AnnounceEvent::Started,
            num_want: Some(50),
            key: 77,
            ..AnnounceRequest::new(InfoHash([4; 20]), PeerId([5; 20]), 6881)
        }
    }

    #[test]
    fn connect_request_round_trips() {
        let packet = encode_connect_request(0x1234_5678);
        assert_eq!(&packet[..8], &[0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80]);
        assert_eq!(decode_request(&packet), Ok(Request::Connect { transaction_id: 0x1234_5678 }));
    }

    #[test]
    fn announce_request_layout_and_round_trip() {
        let packet = encode_announce_request(9, 10, &announce(), b"");
        assert_eq!(packet.len(), ANNOUNCE_REQUEST_LEN);
        assert_eq!(&packet[80..84], &2u32.to_be_bytes()); // started
        assert_eq!(&packet[92..96], &50i32.to_be_bytes());
        assert_eq!(&packet[96..98], &6881u16.to_be_bytes());
        let Ok(Request::Announce(decoded)) = decode_request(&packet) else { panic!() };
        assert_eq!(decoded.connection_id, 9);
        assert_eq!(decoded.transaction_id, 10);
        assert_eq!(decoded.request, announce());
        assert_eq!(decoded.ip, None);
        assert!(decoded.url_data.is_empty());

        let mut unknown = announce();
        unknown.left = None;
        unknown.num_want = None;
        let packet = encode_announce_request(9, 10, &unknown, b"");
        assert_eq!(&packet[92..96], &(-1i32).to_be_bytes());
        let Ok(Request::Announce(decoded)) = decode_request(&packet) else { panic!() };
        assert_eq!(decoded.request.left, Some(crate::types::LEFT_WHEN_UNKNOWN));
        assert_eq!(decoded.request.num_want, None);
    }

    #[test]
    fn url_data_is_chunked_and_reassembled() {
        let long: Vec<u8> = (0..600u32).map(|i| b'a' + (i % 26) as u8).collect();
        let packet = encode_announce_request(1, 2, &announce(), &long);
        assert_eq!(packet.len(), ANNOUNCE_REQUEST_LEN + 600 + 3 * 2);
        let Ok(Request::Announce(decoded)) = decode_request(&packet) else { panic!() };
        assert_eq!(decoded.url_data, long);

        // NOPs are skipped, unknown options skipped by length, the end option stops the scan.
        let mut packet = encode_announce_request(1, 2, &announce(), b"");
        packet.extend_from_slice(&[1, 1, 2, 2, b'/', b'a', 9, 1, b'x', 2, 1, b'b', 0, 2, 5]);
        let Ok(Request::Announce(decoded)) = decode_request(&packet) else { panic!() };
        assert_eq!(decoded.url_data, b"/ab");

        for tail in [&[2u8][..], &[2, 5, b'a'], &[9]] {
            let mut packet = encode_announce_request(1, 2, &announce(), b"");
            packet.extend_from_slice(tail);
            assert_eq!(decode_request(&packet), Err(UdpError::BadOptions), "{tail:?}");
        }
    }

    #[test]
    fn scrape_request_round_trips_and_is_bounded() {
        let hashes = vec![InfoHash([1; 20]), InfoHash([2; 20])];
        let packet = encode_scrape_request(5, 6, &hashes).unwrap();
        assert_eq!(packet.len(), 16 + 40);
        assert_eq!(
            decode_request(&packet),
            Ok(Request::Scrape { connection_id: 5, transaction_id: 6, info_hashes: hashes })
        );
        assert_eq!(encode_scrape_request(5, 6, &[]), Err(UdpError::NoHashes));
        let many = vec![InfoHash([0; 20]); MAX_SCRAPE_HASHES + 1];
        assert_eq!(encode_scrape_request(5, 6, &many), Err(UdpError::TooManyHashes(75)));
    }

    #[test]
    fn rejects_malformed_requests() {
        let connect = encode_connect_request(1);
        let mut bad_magic = connect;
        bad_magic[0] = 1;
        assert_eq!(decode_request(&bad_magic), Err(UdpError::BadMagic));
        let mut long = connect.to_vec();
        long.push(0);
        assert!(matches!(decode_request(&long), Err(UdpError::BadLength { .. })));
        assert!(matches!(decode_request(&connect[..15]), Err(UdpError::Truncated { .. })));
        assert!(matches!(decode_request(&[]), Err(UdpError::Truncated { .. })));

        let announce = encode_announce_request(1, 2, &announce(), b"");
        assert!(matches!(decode_request(&announce[..97]), Err(UdpError::Truncated { .. })));
        let mut bad_event = announce.clone();
        bad_event[83] = 9;
        assert_eq!(decode_request(&bad_event), Err(UdpError::UnknownEvent(9)));
        let mut bad_action = announce.clone();
        bad_action[11] = 3;
        assert_eq!(decode_request(&bad_action), Err(UdpError::UnknownAction(3)));
        bad_action[11] = 7;
        assert_eq!(decode_request(&bad_action), Err(UdpError::UnknownAction(7)));

        let scrape = encode_scrape_request(1, 2, &[InfoHash([1; 20])]).unwrap();
        assert!(matches!(decode_request(&scrape[..30]), Err(UdpError::BadLength { .. })));
        assert_eq!(decode_request(&scrape[..16]), Err(UdpError::NoHashes));
        let mut many = scrape[..16].to_vec();
        many.extend(std::iter::repeat_n(0u8, 20 * 75));
        assert_eq!(decode_request(&many), Err(UdpError::TooManyHashes(75)));
    }
}
