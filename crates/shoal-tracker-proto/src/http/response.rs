//! Parsing an HTTP tracker's bencoded answers (client side).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use shoal_proto::bencode::{self, BencodeError, Dict, Limits, Value};
use shoal_proto::InfoHash;
use thiserror::Error;

use crate::types::{
    bounded_message, clamp_interval, clamp_min_interval, AnnounceResponse, ScrapeResponse,
    ScrapeStats, DEFAULT_INTERVAL, MAX_PEERS, MAX_SCRAPE_FILES, MAX_TRACKER_ID_LEN,
};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The tracker refused the request and said why (`failure reason`).
    #[error("tracker failure: {0}")]
    Failure(String),
    #[error("tracker response is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("tracker response is not a dictionary")]
    NotADictionary,
    #[error("tracker response field `{field}`: {reason}")]
    BadField { field: &'static str, reason: &'static str },
    #[error("tracker sent {0} peers, more than the {MAX_PEERS} we accept")]
    TooManyPeers(usize),
    #[error("tracker scrape lists {0} torrents, more than the {MAX_SCRAPE_FILES} we accept")]
    TooManyFiles(usize),
}

/// Decoding bounds: a peer in the dictionary model takes at most 5 values (the dictionary and
/// its `ip`, `port`, `peer id`, plus one spare), a scrape entry 5; the rest is a few dozen.
fn limits(items: usize) -> Limits {
    Limits { max_depth: 8, max_values: items * 5 + 64 }
}

/// Parses an announce answer. A `failure reason` becomes [`HttpError::Failure`].
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, HttpError> {
    let value = bencode::decode_with(body, limits(MAX_PEERS))?;
    let dict = value.as_dict().ok_or(HttpError::NotADictionary)?;
    check_failure(dict)?;

    let interval = match dict.get(b"interval") {
        None => DEFAULT_INTERVAL,
        Some(v) => clamp_interval(non_negative(v, "interval")?),
    };
    let min_interval = match dict.get(b"min interval") {
        None => None,
        Some(v) => Some(clamp_min_interval(non_negative(v, "min interval")?, interval)),
    };

    let mut peers = Vec::new();
    match dict.get(b"peers") {
        None => {}
        Some(Value::Bytes(compact)) => compact_peers_v4(compact, &mut peers)?,
        Some(Value::List(list)) => dictionary_peers(list, &mut peers)?,
        Some(_) => {
            return Err(HttpError::BadField {
                field: "peers",
                reason: "neither a string nor a list",
            })
        }
    }
    match dict.get(b"peers6") {
        None => {}
        Some(Value::Bytes(compact)) => compact_peers_v6(compact, &mut peers)?,
        Some(_) => return Err(HttpError::BadField { field: "peers6", reason: "not a string" }),
    }

    let tracker_id = match dict.get(b"tracker id") {
        None => None,
        Some(Value::Bytes(id)) if id.len() <= MAX_TRACKER_ID_LEN => Some(id.to_vec()),
        Some(Value::Bytes(_)) => {
            return Err(HttpError::BadField { field: "tracker id", reason: "too long" })
        }
        Some(_) => return Err(HttpError::BadField { field: "tracker id", reason: "not a string" }),
    };

    Ok(AnnounceResponse {
        interval,
        min_interval,
        peers,
        seeders: dict.get_int(b"complete").and_then(|n| u32::try_from(n).ok()),
        leechers: dict.get_int(b"incomplete").and_then(|n| u32::try_from(n).ok()),
        warning: dict.get_bytes(b"warning message").map(bounded_message),
        tracker_id,
    })
}

/// Parses a scrape answer (BEP 48): counts for each torrent under `files`, keyed by the raw
/// 20-byte info hash.
pub fn parse_scrape_response(body: &[u8]) -> Result<ScrapeResponse, HttpError> {
    let value = bencode::decode_with(body, limits(MAX_SCRAPE_FILES))?;
    let dict = value.as_dict().ok_or(HttpError::NotADictionary)?;
    check_failure(dict)?;
    let Some(files) = dict.get(b"files") else {
        return Ok(ScrapeResponse::default());
    };
    let files = files
        .as_dict()
        .ok_or(HttpError::BadField { field: "files", reason: "not a dictionary" })?;
    if files.len() > MAX_SCRAPE_FILES {
        return Err(HttpError::TooManyFiles(files.len()));
    }
    let mut out = Vec::with_capacity(files.len());
    for (key, stats) in files.iter() {
        let hash: [u8; 20] = key.try_into().map_err(|_| HttpError::BadField {
            field: "files",
            reason: "key is not a 20-byte hash",
        })?;
        let stats = stats
            .as_dict()
            .ok_or(HttpError::BadField { field: "files", reason: "entry is not a dictionary" })?;
        out.push((
            InfoHash(hash),
            ScrapeStats {
                seeders: count(stats, "complete")?,
                completed: count(stats, "downloaded")?,
                leechers: count(stats, "incomplete")?,
            },
        ));
    }
    Ok(ScrapeResponse { files: out })
}

fn check_failure(dict: &Dict<'_>) -> Result<(), HttpError> {
    match dict.get(b"failure reason") {
        None => Ok(()),
        Some(reason) => Err(HttpError::Failure(bounded_message(reason.as_bytes().unwrap_or(b"")))),
    }
}

fn non_negative(value: &Value<'_>, field: &'static str) -> Result<u64, HttpError> {
    let n = value.as_int().ok_or(HttpError::BadField { field, reason: "not an integer" })?;
    u64::try_from(n).map_err(|_| HttpError::BadField { field, reason: "negative" })
}

/// A scrape count; absent means 0, values past `u32::MAX` saturate.
fn count(dict: &Dict<'_>, field: &'static str) -> Result<u32, HttpError> {
    match dict.get(field.as_bytes()) {
        None => Ok(0),
        Some(v) => Ok(u32::try_from(non_negative(v, field)?).unwrap_or(u32::MAX)),
    }
}

fn check_peer_count(total: usize) -> Result<(), HttpError> {
    if total > MAX_PEERS {
        return Err(HttpError::TooManyPeers(total));
    }
    Ok(())
}

/// BEP 23: 4 address bytes and 2 port bytes per peer, network order.
fn compact_peers_v4(bytes: &[u8], peers: &mut Vec<SocketAddr>) -> Result<(), HttpError> {
    if !bytes.len().is_multiple_of(6) {
        return Err(HttpError::BadField {
            field: "peers",
            reason: "length is not a multiple of 6",
        });
    }
    check_peer_count(peers.len() + bytes.len() / 6)?;
    peers.extend(bytes.chunks_exact(6).filter_map(crate::compact::peer_v4).map(SocketAddr::V4));
    Ok(())
}

/// BEP 7: 16 address bytes and 2 port bytes per peer.
fn compact_peers_v6(bytes: &[u8], peers: &mut Vec<SocketAddr>) -> Result<(), HttpError> {
    if !bytes.len().is_multiple_of(18) {
        return Err(HttpError::BadField {
            field: "peers6",
            reason: "length is not a multiple of 18",
        });
    }
    check_peer_count(peers.len() + bytes.len() / 18)?;
    peers.extend(bytes.chunks_exact(18).filter_map(crate::compact::peer_v6).map(SocketAddr::V6));
    Ok(())
}

/// BEP 3's original model: a list of `{ip, port, peer id}` dictionaries. Entries we cannot use
/// (a host name instead of an address, a port out of range) are skipped, not fatal.
fn dictionary_peers(list: &[Value<'_>], peers: &mut Vec<SocketAddr>) -> Result<(), HttpError> {
    check_peer_count(peers.len() + list.len())?;
    for entry in list {
        let Some(dict) = entry.as_dict() else { continue };
        let ip = dict.get_str(b"ip").and_then(|s| s.parse::<IpAddr>().ok());
        let port = dict.get_int(b"port").and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0);
        if let (Some(ip), Some(port)) = (ip, port) {
            peers.push(match ip {
                IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, port)),
                IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::types::{MAX_INTERVAL, MIN_INTERVAL};

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_a_compact_answer() {
        let mut body =
            b"d8:completei5e10:incompletei7e8:intervali1800e12:min intervali60e5:peers12:".to_vec();
        body.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        body.extend_from_slice(b"6:peers618:");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe2]);
        body.extend_from_slice(b"10:tracker id3:abc15:warning message4:caree");
        let r = parse_announce_response(&body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(r.leechers, Some(7));
        assert_eq!(r.peers, vec![v4("127.0.0.1:6881"), v4("10.0.0.2:80"), v4("[::1]:6882")]);
        assert_eq!(r.tracker_id.as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.warning.as_deref(), Some("care"));
    }

    #[test]
    fn parses_dictionary_peers_and_skips_unusable_ones() {
        let body = concat!(
            "d8:intervali900e5:peersl",
            "d2:ip9:127.0.0.27:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881ee",
            "d2:ip3:::14:porti1ee",
            "d2:ip11:example.com4:porti1ee", // a host name: skipped
            "d2:ip7:1.2.3.44:porti70000ee",  // port out of range: skipped
            "d2:ip7:1.2.3.44:porti0ee",      // port 0: skipped
            "i5e",                           // not a dictionary: skipped
            "ee"
        );
        let r = parse_announce_response(body.as_bytes()).unwrap();
        assert_eq!(r.peers, vec![v4("127.0.0.2:6881"), v4("[::1]:1")]);
        assert_eq!(r.seeders, None);
    }

    #[test]
    fn failure_reason_is_an_error_with_its_text() {
        let r = parse_announce_response(b"d14:failure reason9:not founde");
        assert_eq!(r, Err(HttpError::Failure("not found".into())));
        assert_eq!(
            parse_scrape_response(b"d14:failure reason2:noe"),
            Err(HttpError::Failure("no".into()))
        );
    }

    #[test]
    fn intervals_are_clamped_and_defaulted() {
        let r =
            parse_announce_response(b"d8:intervali1e12:min intervali999999e5:peers0:e").unwrap();
        assert_eq!(r.interval, MIN_INTERVAL);
        assert_eq!(r.min_interval, Some(MIN_INTERVAL));
        let r = parse_announce_response(b"d8:intervali99999999999ee").unwrap();
        assert_eq!(r.interval, MAX_INTERVAL);
        let r = parse_announce_response(b"d5:peerslee").unwrap();
        assert_eq!(r.interval, DEFAULT_INTERVAL);
        assert!(r.peers.is_empty());
    }

    #[test]
    fn rejects_malformed_answers() {
        let cases: &[&[u8]] = &[
            b"",
            b"le",
            b"d8:intervali-5ee",
            b"d8:interval3:abce",
            b"d5:peers5:abcdee",
            b"d6:peers65:abcdee",
            b"d5:peersi3ee",
            b"d6:peers6le",
            b"d10:tracker idi1ee",
            b"d8:intervali1800e",
            b"d8:intervali1800eeXX",
        ];
        for body in cases {
            assert!(parse_announce_response(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let mut long_id = b"d10:tracker id300:".to_vec();
        long_id.extend_from_slice(&[b'x'; 300]);
        long_id.push(b'e');
        assert!(parse_announce_response(&long_id).is_err());
    }

    #[test]
    fn bounds_the_peer_count() {
        let n = MAX_PEERS + 1;
        let mut body = format!("d5:peers{}:", n * 6).into_bytes();
        body.extend(std::iter::repeat_n(1u8, n * 6));
        body.push(b'e');
        assert_eq!(parse_announce_response(&body), Err(HttpError::TooManyPeers(n)));

        let mut body = b"d5:peersl".to_vec();
        for _ in 0..n {
            body.extend_from_slice(b"d4:porti1ee");
        }
        body.extend_from_slice(b"ee");
        assert!(parse_announce_response(&body).is_err());
    }

    #[test]
    fn parses_scrape_answers() {
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&[7; 20]);
        body.extend_from_slice(b"d8:completei3e10:downloadedi9e10:incompletei4e4:name1:xe20:");
        body.extend_from_slice(&[8; 20]);
        body.extend_from_slice(b"d8:completei99999999999eeee");
        let r = parse_scrape_response(&body).unwrap();
        assert_eq!(
            r.get(&InfoHash([7; 20])),
            Some(ScrapeStats { seeders: 3, completed: 9, leechers: 4 })
        );
        assert_eq!(
            r.get(&InfoHash([8; 20])),
            Some(ScrapeStats { seeders: u32::MAX, completed: 0, leechers: 0 })
        );
        assert_eq!(parse_scrape_response(b"de").unwrap(), ScrapeResponse::default());
        for bad in [
            &b"d5:filesd3:abcdeee"[..],
            b"d5:filesi1ee",
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaai1eee",
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei-1eeee",
            b"i1e",
        ] {
            assert!(parse_scrape_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
