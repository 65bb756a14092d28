//! The server half of HTTP trackers: reading a client's query string and writing answers.

use std::net::IpAddr;

use shoal_proto::bencode::Encoder;
use shoal_proto::{InfoHash, PeerId};
use thiserror::Error;

use crate::compact;
use crate::percent;
use crate::types::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeResponse, MAX_TRACKER_ID_LEN,
};

/// How many `info_hash` parameters one scrape query may carry.
pub const MAX_QUERY_SCRAPE_HASHES: usize = 256;
/// How many parameters of any kind a query may carry (real clients send about 15).
const MAX_QUERY_PARAMS: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueryError {
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{0}` appears more than once")]
    Duplicate(String),
    #[error("parameter `{name}` is invalid: {reason}")]
    Invalid { name: String, reason: &'static str },
    #[error("query has more than {0} parameters")]
    TooManyParams(usize),
    #[error("scrape asks for more than {0} torrents")]
    TooManyHashes(usize),
}

/// An announce as a tracker server receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAnnounce {
    pub request: AnnounceRequest,
    /// The client does not want peer ids in a dictionary-model answer (BEP 23).
    pub no_peer_id: bool,
    /// The `ip` parameter, if the client sent one as an address. Trusting it lets anyone
    /// announce someone else's address, so servers normally ignore it.
    pub ip: Option<IpAddr>,
}

/// How the peer list of an answer is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFormat {
    /// `peers` (6 bytes each) and `peers6` (18 bytes each) strings.
    Compact,
    /// A list of `{ip, port}` dictionaries (without peer ids, which [`AnnounceResponse`] does
    /// not carry; BEP 23's `no_peer_id` allows that).
    Dictionary,
}

/// Splits a query string into decoded `(name, value)` pairs.
fn params(query: &str) -> Result<Vec<(String, Vec<u8>)>, QueryError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_QUERY_PARAMS {
            return Err(QueryError::TooManyParams(MAX_QUERY_PARAMS));
        }
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name_bytes = percent::decode(name).map_err(|_| QueryError::Invalid {
            name: name.to_owned(),
            reason: "bad percent escape in name",
        })?;
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        let value = percent::decode(value).map_err(|_| QueryError::Invalid {
            name: name.clone(),
            reason: "bad percent escape",
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// Parses an announce query string (with or without the leading `?`).
///
/// A missing `left` reads as unknown (BEP 3 requires it, not every client sends it). `compact`
/// defaults to on, as with most trackers: only `compact=0` asks for dictionary peers.
pub fn parse_announce_query(query: &str) -> Result<ServerAnnounce, QueryError> {
    let params = params(query)?;
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &params {
        if seen.contains(&name.as_str()) {
            return Err(QueryError::Duplicate(name.clone()));
        }
        seen.push(name);
    }
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());

    let info_hash =
        InfoHash(fixed20(get("info_hash").ok_or(QueryError::Missing("info_hash"))?, "info_hash")?);
    let peer_id =
        PeerId(fixed20(get("peer_id").ok_or(QueryError::Missing("peer_id"))?, "peer_id")?);
    let port = number(get("port").ok_or(QueryError::Missing("port"))?, "port")?;
    let port = u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(QueryError::Invalid { name: "port".into(), reason: "not in 1-65535" })?;
    let uploaded = get("uploaded").map(|v| number(v, "uploaded")).transpose()?.unwrap_or(0);
    let downloaded = get("downloaded").map(|v| number(v, "downloaded")).transpose()?.unwrap_or(0);
    let left = get("left").map(|v| number(v, "left")).transpose()?;
    let event = match get("event").unwrap_or(b"") {
        b"" | b"empty" | b"paused" => AnnounceEvent::None,
        b"started" => AnnounceEvent::Started,
        b"completed" => AnnounceEvent::Completed,
        b"stopped" => AnnounceEvent::Stopped,
        _ => return Err(QueryError::Invalid { name: "event".into(), reason: "unknown event" }),
    };
    let num_want = get("numwant")
        .map(|v| number(v, "numwant"))
        .transpose()?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let key = get("key").map(parse_key).unwrap_or(0);
    let compact = get("compact").is_none_or(|v| v != b"0");
    let no_peer_id = get("no_peer_id").is_some_and(|v| v != b"0");
    let tracker_id = match get("trackerid") {
        Some(id) if id.len() > MAX_TRACKER_ID_LEN => {
            return Err(QueryError::Invalid { name: "trackerid".into(), reason: "too long" })
        }
        Some(id) => Some(id.to_vec()),
        None => None,
    };
    let ip = get("ip").and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.parse().ok());

    Ok(ServerAnnounce {
        request: AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded,
            downloaded,
            left,
            event,
            num_want,
            key,
            compact,
            tracker_id,
        },
        no_peer_id,
        ip,
    })
}

/// Parses a scrape query: every `info_hash` parameter, in order (none means "all torrents",
/// which the server may refuse).
pub fn parse_scrape_query(query: &str) -> Result<Vec<InfoHash>, QueryError> {
    let mut hashes = Vec::new();
    for (name, value) in params(query)? {
        if name == "info_hash" {
            if hashes.len() == MAX_QUERY_SCRAPE_HASHES {
                return Err(QueryError::TooManyHashes(MAX_QUERY_SCRAPE_HASHES));
            }
            hashes.push(InfoHash(fixed20(&value, "info_hash")?));
        }
    }
    Ok(hashes)
}

/// Encodes a successful announce answer.
pub fn encode_announce_response(resp: &AnnounceResponse, format: PeerFormat) -> Vec<u8> {
    let mut e = Encoder::new();
    e.begin_dict();
    if let Some(seeders) = resp.seeders {
        e.key(b"complete").int(i64::from(seeders));
    }
    if let Some(leechers) = resp.leechers {
        e.key(b"incomplete").int(i64::from(leechers));
    }
    e.key(b"interval").int(secs(resp.interval));
    if let Some(min) = resp.min_interval {
        e.key(b"min interval").int(secs(min));
    }
    match format {
        PeerFormat::Compact => {
            let mut v4 = Vec::new();
            compact::write_v4(&resp.peers, &mut v4);
            e.key(b"peers").bytes(&v4);
            let mut v6 = Vec::new();
            if compact::write_v6(&resp.peers, &mut v6) > 0 {
                e.key(b"peers6").bytes(&v6);
            }
        }
        PeerFormat::Dictionary => {
            e.key(b"peers").begin_list();
            for peer in &resp.peers {
                e.begin_dict()
                    .key(b"ip")
                    .str(&peer.ip().to_string())
                    .key(b"port")
                    .int(i64::from(peer.port()))
                    .end();
            }
            e.end();
        }
    }
    if let Some(id) = &resp.tracker_id {
        e.key(b"tracker id").bytes(id);
    }
    if let Some(warning) = &resp.warning {
        e.key(b"warning message").str(warning);
    }
    e.end();
    e.finish()
}

/// Encodes a scrape answer. Torrents are written in info-hash order (bencode needs sorted
/// keys) and a repeated one only once.
pub fn encode_scrape_response(resp: &ScrapeResponse) -> Vec<u8> {
    let mut files = resp.files.clone();
    files.sort_by_key(|(hash, _)| *hash);
    files.dedup_by_key(|(hash, _)| *hash);
    let mut e = Encoder::new();
    e.begin_dict().key(b"files").begin_dict();
    for (hash, stats) in &files {
        e.key(&hash.0)
            .begin_dict()
            .key(b"complete")
            .int(i64::from(stats.seeders))
            .key(b"downloaded")
            .int(i64::from(stats.completed))
            .key(b"incomplete")
            .int(i64::from(stats.leechers))
            .end();
    }
    e.end().end();
    e.finish()
}

/// Encodes a refusal: `failure reason` with the text the client will show.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut e = Encoder::new();
    e.begin_dict().key(b"failure reason").str(reason).end();
    e.finish()
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn fixed20(value: &[u8], name: &'static str) -> Result<[u8; 20], QueryError> {
    value.try_into().map_err(|_| QueryError::Invalid { name: name.into(), reason: "not 20 bytes" })
}

fn number(value: &[u8], name: &'static str) -> Result<u64, QueryError> {
    let invalid =
        || QueryError::Invalid { name: name.into(), reason: "not a non-negative integer" };
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    value
        .iter()
        .try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        .ok_or_else(invalid)
}

/// Clients send the key as 8 hex digits (libtorrent), decimal, or random letters (Azureus);
/// the server only needs a stable identity, so anything else is hashed (FNV-1a).
fn parse_key(value: &[u8]) -> u32 {
    if let Ok(text) = std::str::from_utf8(value) {
        if !text.is_empty() && text.len() <= 8 {
            if let Ok(k) = u32::from_str_radix(text, 16) {
                return k;
            }
        }
    }
    value.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::http::{
        announce_url, parse_announce_response, parse_scrape_response, scrape_url_for,
    };
    use crate::types::ScrapeStats;

    fn query_of(url: &str) -> &str {
        url.split_once('?').map(|(_, q)| q).unwrap()
    }

    fn sample_request() -> AnnounceRequest {
        AnnounceRequest {
            uploaded: 1,
            downloaded: 2,
            left: Some(3),
            event: AnnounceEvent::Completed,
            num_want: Some(25),
            key: 0xdead_beef,
            tracker_id: Some(vec![0, 255, b'&']),
            ..AnnounceRequest::new(InfoHash([0x26; 20]), PeerId([b'='; 20]), 51413)
        }
    }

    #[test]
    fn client_url_round_trips_through_the_server_parser() {
        let req = sample_request();
        // A passkey in the base URL is an unknown parameter to the parser, not an error.
        let url = announce_url("http://t/announce?passkey=k", &req);
        let parsed = parse_announce_query(query_of(&url)).unwrap();
        assert_eq!(parsed.request, req);
        assert!(!parsed.no_peer_id);
        assert_eq!(parsed.ip, None);
    }

    #[test]
    fn parses_lenient_optional_fields() {
        let q = "?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&event=&key=Xyz_123-\
                 &compact=0&no_peer_id=1&ip=10.0.0.1&unknown=1";
        let parsed = parse_announce_query(q).unwrap();
        assert_eq!(parsed.request.left, None);
        assert_eq!(parsed.request.event, AnnounceEvent::None);
        assert!(!parsed.request.compact);
        assert!(parsed.no_peer_id);
        assert_eq!(parsed.ip, Some("10.0.0.1".parse().unwrap()));
        assert_ne!(parsed.request.key, 0);
        assert_eq!(parsed.request.num_want, None);
    }

    #[test]
    fn rejects_bad_queries_clearly() {
        let base = "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb";
        let cases = [
            ("peer_id=bbbbbbbbbbbbbbbbbbbb&port=1".to_string(), QueryError::Missing("info_hash")),
            (base.to_string(), QueryError::Missing("port")),
            (
                format!("{base}&port=0"),
                QueryError::Invalid { name: "port".into(), reason: "not in 1-65535" },
            ),
            (
                format!("{base}&port=65536"),
                QueryError::Invalid { name: "port".into(), reason: "not in 1-65535" },
            ),
            (
                format!("{base}&port=1&left=-1"),
                QueryError::Invalid { name: "left".into(), reason: "not a non-negative integer" },
            ),
            (
                format!("{base}&port=1&uploaded=99999999999999999999"),
                QueryError::Invalid {
                    name: "uploaded".into(),
                    reason: "not a non-negative integer",
                },
            ),
            (
                format!("{base}&port=1&event=bogus"),
                QueryError::Invalid { name: "event".into(), reason: "unknown event" },
            ),
            (format!("{base}&port=1&port=2"), QueryError::Duplicate("port".into())),
            (
                "info_hash=short&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1".to_string(),
                QueryError::Invalid { name: "info_hash".into(), reason: "not 20 bytes" },
            ),
            (
                format!("{base}&port=1&x=%g1"),
                QueryError::Invalid { name: "x".into(), reason: "bad percent escape" },
            ),
            (format!("{base}{}", "&a=1".repeat(70)), QueryError::TooManyParams(64)),
        ];
        for (query, expected) in cases {
            assert_eq!(parse_announce_query(&query), Err(expected), "{query}");
        }
    }

    #[test]
    fn scrape_queries_collect_every_hash() {
        let hashes = [InfoHash([1; 20]), InfoHash([2; 20])];
        let url = scrape_url_for("http://t/scrape?passkey=1", &hashes);
        assert_eq!(parse_scrape_query(query_of(&url)).unwrap(), hashes);
        assert!(parse_scrape_query("info_hash=abc").is_err());
        let many = "info_hash=aaaaaaaaaaaaaaaaaaaa&".repeat(MAX_QUERY_SCRAPE_HASHES + 1);
        assert!(parse_scrape_query(&many).is_err());
    }

    #[test]
    fn encoded_answers_parse_back() {
        let peers: Vec<SocketAddr> = vec![
            "1.2.3.4:5".parse().unwrap(),
            "[2001:db8::1]:6".parse().unwrap(),
            "5.6.7.8:9".parse().unwrap(),
        ];
        let resp = AnnounceResponse {
            interval: Duration::from_secs(900),
            min_interval: Some(Duration::from_secs(120)),
            peers: peers.clone(),
            seeders: Some(3),
            leechers: Some(4),
            warning: Some("slow down".into()),
            tracker_id: Some(b"tid".to_vec()),
        };
        let compact =
            parse_announce_response(&encode_announce_response(&resp, PeerFormat::Compact)).unwrap();
        // Compact answers list IPv4 peers first, then IPv6 ones.
        assert_eq!(compact.peers, vec![peers[0], peers[2], peers[1]]);
        assert_eq!(AnnounceResponse { peers: peers.clone(), ..compact }, resp);
        let dict =
            parse_announce_response(&encode_announce_response(&resp, PeerFormat::Dictionary))
                .unwrap();
        assert_eq!(dict, resp);
    }

    #[test]
    fn scrape_and_failure_answers_parse_back() {
        let stats = ScrapeStats { seeders: 1, completed: 2, leechers: 3 };
        let resp = ScrapeResponse {
            files: vec![
                (InfoHash([9; 20]), stats),
                (InfoHash([1; 20]), stats),
                (InfoHash([9; 20]), stats),
            ],
        };
        let parsed = parse_scrape_response(&encode_scrape_response(&resp)).unwrap();
        assert_eq!(parsed.files, vec![(InfoHash([1; 20]), stats), (InfoHash([9; 20]), stats)]);
        assert_eq!(
            parse_announce_response(&encode_failure("nope")),
            Err(crate::http::HttpError::Failure("nope".into()))
        );
    }
}
