//! Tracker-to-client packets: encoded by the server, decoded by clients.

use std::net::SocketAddr;

use super::{
    Action, AddressFamily, Reader, UdpError, ANNOUNCE_RESPONSE_HEADER_LEN, CONNECT_RESPONSE_LEN,
    ERROR_HEADER_LEN, SCRAPE_RESPONSE_HEADER_LEN,
};
use crate::compact;
use crate::types::{bounded_message, clamp_interval, AnnounceResponse, ScrapeStats, MAX_PEERS};

/// A decoded tracker packet. The client matches `transaction_id` against what it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        response: AnnounceResponse,
    },
    /// Counts in the order the hashes were asked.
    Scrape {
        transaction_id: u32,
        stats: Vec<ScrapeStats>,
    },
    /// The tracker refused the request; the text is for the user.
    Error {
        transaction_id: u32,
        message: String,
    },
}

impl Response {
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

pub fn encode_connect_response(
    transaction_id: u32,
    connection_id: u64,
) -> [u8; CONNECT_RESPONSE_LEN] {
    let mut out = [0u8; CONNECT_RESPONSE_LEN];
    out[..4].copy_from_slice(&(Action::Connect as u32).to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    out[8..].copy_from_slice(&connection_id.to_be_bytes());
    out
}

/// An announce answer carrying the peers of `family` only (the other family's cannot be
/// expressed in this packet). Missing counts are sent as 0.
pub fn encode_announce_response(
    transaction_id: u32,
    resp: &AnnounceResponse,
    family: AddressFamily,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(ANNOUNCE_RESPONSE_HEADER_LEN + resp.peers.len() * compact::V6_LEN);
    out.extend_from_slice(&(Action::Announce as u32).to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    let interval = u32::try_from(resp.interval.as_secs()).unwrap_or(u32::MAX);
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&resp.leechers.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&resp.seeders.unwrap_or(0).to_be_bytes());
    match family {
        AddressFamily::V4 => compact::write_v4(&resp.peers, &mut out),
        AddressFamily::V6 => compact::write_v6(&resp.peers, &mut out),
    };
    out
}

pub fn encode_scrape_response(transaction_id: u32, stats: &[ScrapeStats]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SCRAPE_RESPONSE_HEADER_LEN + 12 * stats.len());
    out.extend_from_slice(&(Action::Scrape as u32).to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for s in stats {
        out.extend_from_slice(&s.seeders.to_be_bytes());
        out.extend_from_slice(&s.completed.to_be_bytes());
        out.extend_from_slice(&s.leechers.to_be_bytes());
    }
    out
}

pub fn encode_error(transaction_id: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(ERROR_HEADER_LEN + message.len());
    out.extend_from_slice(&(Action::Error as u32).to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// Decodes a tracker packet (client side). `family` is the one the exchange runs over and
/// fixes the size of each peer in an announce answer.
pub fn decode_response(buf: &[u8], family: AddressFamily) -> Result<Response, UdpError> {
    let mut r = Reader::new(buf);
    let action = r.u32()?;
    let transaction_id = r.u32()?;
    match Action::from_u32(action) {
        Some(Action::Connect) => {
            if buf.len() < CONNECT_RESPONSE_LEN {
                return Err(UdpError::Truncated { len: buf.len(), need: CONNECT_RESPONSE_LEN });
            }
            if buf.len() != CONNECT_RESPONSE_LEN {
                return Err(UdpError::BadLength { len: buf.len(), what: "a connect response" });
            }
            Ok(Response::Connect { transaction_id, connection_id: r.u64()? })
        }
        Some(Action::Announce) => {
            let interval = r.u32()?;
            let leechers = r.u32()?;
            let seeders = r.u32()?;
            let body = r.rest();
            let size = match family {
                AddressFamily::V4 => compact::V4_LEN,
                AddressFamily::V6 => compact::V6_LEN,
            };
            if !body.len().is_multiple_of(size) {
                return Err(UdpError::BadLength { len: buf.len(), what: "an announce response" });
            }
            if body.len() / size > MAX_PEERS {
                return Err(UdpError::TooManyPeers(body.len() / size));
            }
            let peers: Vec<SocketAddr> = match family {
                AddressFamily::V4 => body
                    .chunks_exact(size)
                    .filter_map(compact::peer_v4)
                    .map(SocketAddr::V4)
                    .collect(),
                AddressFamily::V6 => body
                    .chunks_exact(size)
                    .filter_map(compact::peer_v6)
                    .map(SocketAddr::V6)
                    .collect(),
            };
            Ok(Response::Announce {
                transaction_id,
                response: AnnounceResponse {
                    interval: clamp_interval(u64::from(interval)),
                    min_interval: None,
                    peers,
                    seeders: Some(seeders),
                    leechers: Some(leechers),
                    warning: None,
                    tracker_id: None,
                },
            })
        }
        Some(Action::Scrape) => {
            let body = r.rest();
            if !body.len().is_multiple_of(12) {
                return Err(UdpError::BadLength { len: buf.len(), what: "a scrape response" });
            }
            let mut stats = Vec::with_capacity(body.len() / 12);
            let mut r = Reader::new(body);
            for _ in 0..body.len() / 12 {
                stats.push(ScrapeStats {
                    seeders: r.u32()?,
                    completed: r.u32()?,
                    leechers: r.u32()?,
                });
            }
            Ok(Response::Scrape { transaction_id, stats })
        }
        Some(Action::Error) => {
            Ok(Response::Error { transaction_id, message: bounded_message(r.rest()) })
        }
        None => Err(UdpError::UnknownAction(action)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::types::{MAX_INTERVAL, MIN_INTERVAL};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connect_response_round_trips() {
        let packet = encode_connect_response(7, 0xdead_beef_cafe);
        assert_eq!(
            decode_response(&packet, AddressFamily::V4),
            Ok(Response::Connect { transaction_id: 7, connection_id: 0xdead_beef_cafe })
        );
        assert!(matches!(
            decode_response(&packet[..15], AddressFamily::V4),
            Err(UdpError::Truncated { .. })
        ));
        let mut long = packet.to_vec();
        long.push(0);
        assert!(matches!(
            decode_response(&long, AddressFamily::V4),
            Err(UdpError::BadLength { .. })
        ));
    }

    #[test]
    fn announce_response_round_trips_per_family() {
        let resp = AnnounceResponse {
            interval: Duration::from_secs(1800),
            min_interval: None,
            peers: vec![addr("1.2.3.4:6881"), addr("[2001:db8::2]:51413"), addr("5.6.7.8:1")],
            seeders: Some(3),
            leechers: Some(4),
            warning: None,
            tracker_id: None,
        };
        let v4 = encode_announce_response(1, &resp, AddressFamily::V4);
        assert_eq!(v4.len(), 20 + 2 * 6);
        let Ok(Response::Announce { transaction_id: 1, response }) =
            decode_response(&v4, AddressFamily::V4)
        else {
            panic!()
        };
        assert_eq!(response.peers, vec![addr("1.2.3.4:6881"), addr("5.6.7.8:1")]);
        assert_eq!(response.seeders, Some(3));
        assert_eq!(response.leechers, Some(4));
        assert_eq!(response.interval, Duration::from_secs(1800));

        let v6 = encode_announce_response(2, &resp, AddressFamily::V6);
        assert_eq!(v6.len(), 20 + 18);
        let Ok(Response::Announce { response, .. }) = decode_response(&v6, AddressFamily::V6)
        else {
            panic!()
        };
        assert_eq!(response.peers, vec![addr("[2001:db8::2]:51413")]);
        // Two IPv4 peers (12 bytes) do not make whole IPv6 peers.
        assert!(matches!(decode_response(&v4, AddressFamily::V6), Err(UdpError::BadLength { .. })));
    }

    #[test]
    fn announce_interval_is_clamped_and_peers_bounded() {
        let mut resp = AnnounceResponse::empty();
        resp.interval = Duration::from_secs(0);
        let packet = encode_announce_response(1, &resp, AddressFamily::V4);
        let Ok(Response::Announce { response, .. }) = decode_response(&packet, AddressFamily::V4)
        else {
            panic!()
        };
        assert_eq!(response.interval, MIN_INTERVAL);
        resp.interval = Duration::from_secs(u64::from(u32::MAX));
        let packet = encode_announce_response(1, &resp, AddressFamily::V4);
        let Ok(Response::Announce { response, .. }) = decode_response(&packet, AddressFamily::V4)
        else {
            panic!()
        };
        assert_eq!(response.interval, MAX_INTERVAL);

        let mut huge = encode_announce_response(1, &AnnounceResponse::empty(), AddressFamily::V4);
        huge.extend(std::iter::repeat_n(1u8, (MAX_PEERS + 1) * 6));
        assert_eq!(
            decode_response(&huge, AddressFamily::V4),
            Err(UdpError::TooManyPeers(MAX_PEERS + 1))
        );
        assert!(matches!(
            decode_response(&huge[..19], AddressFamily::V4),
            Err(UdpError::Truncated { .. })
        ));
    }

    #[test]
    fn scrape_and_error_responses_round_trip() {
        let stats = vec![
            ScrapeStats { seeders: 1, completed: 2, leechers: 3 },
            ScrapeStats { seeders: 4, completed: 5, leechers: 6 },
        ];
        let packet = encode_scrape_response(9, &stats);
        assert_eq!(
            decode_response(&packet, AddressFamily::V4),
            Ok(Response::Scrape { transaction_id: 9, stats: stats.clone() })
        );
        assert!(matches!(
            decode_response(&packet[..13], AddressFamily::V4),
            Err(UdpError::BadLength { .. })
        ));

        let packet = encode_error(4, "unknown torrent");
        let decoded = decode_response(&packet, AddressFamily::V6).unwrap();
        assert_eq!(
            decoded,
            Response::Error { transaction_id: 4, message: "unknown torrent".into() }
        );
        assert_eq!(decoded.transaction_id(), 4);
        assert_eq!(
            decode_response(&encode_error(4, ""), AddressFamily::V4),
            Ok(Response::Error { transaction_id: 4, message: String::new() })
        );
    }

    #[test]
    fn rejects_unknown_actions() {
        let mut packet = encode_error(4, "x");
        packet[3] = 4;
        assert_eq!(decode_response(&packet, AddressFamily::V4), Err(UdpError::UnknownAction(4)));
        assert!(matches!(
            decode_response(&[0, 0, 0], AddressFamily::V4),
            Err(UdpError::Truncated { .. })
        ));
    }
}
