//! Magnet links (BEP 9), with the parameters clients use in practice: `xt` (info hash), `dn`
//! (display name), `tr` (trackers), `ws` (web seeds, BEP 19 style), `xs` (exact sources),
//! `x.pe` (peer addresses) and `so` (select-only file indices, BEP 53).
//!
//! Decoding rule: values are percent-decoded as RFC 3986 query components, and `+` is kept as
//! a literal plus, not turned into a space (magnet links are URIs, not HTML form data; this
//! matches what WebTorrent does). We encode spaces as `%20`, so our own links round-trip.
//! A fragment (`#...`) is not part of the query and is dropped. Unknown parameters are ignored.

use std::net::Ipv6Addr;
use std::ops::RangeInclusive;

use thiserror::Error;

use crate::types::InfoHash;

/// Longest magnet link we parse.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;
/// Most `key=value` parameters in one link.
pub const MAX_PARAMS: usize = 1024;
/// Most ranges in one `so` parameter.
pub const MAX_SELECT_RANGES: usize = 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MagnetError {
    #[error("magnet link is {0} bytes, more than the {MAX_MAGNET_LEN}-byte limit")]
    TooLong(usize),
    #[error("not a magnet link (it should start with `magnet:?`)")]
    NotMagnet,
    #[error("magnet link has more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("bad percent-encoding in magnet parameter `{0}`")]
    BadEncoding(String),
    #[error("magnet parameter `{0}` is not valid UTF-8 once decoded")]
    NotUtf8(String),
    #[error("magnet link has no `xt=urn:btih:` info hash")]
    MissingInfoHash,
    #[error(
        "magnet link only has a v2 (`urn:btmh:`) info hash; v2-only torrents are not supported"
    )]
    V2Only,
    #[error("bad info hash {0:?}: expected 40 hex or 32 base32 characters")]
    BadInfoHash(String),
    #[error("magnet link has two different info hashes, {0} and {1}")]
    ConflictingInfoHashes(InfoHash, InfoHash),
    #[error("bad peer address {0:?} in `x.pe` (expected host:port or [v6]:port)")]
    BadPeer(String),
    #[error("bad `so` (select-only) value {0:?}: expected indices and ranges like 0,2,4-6")]
    BadSelectOnly(String),
    #[error("`so` lists more than {MAX_SELECT_RANGES} ranges")]
    TooManyRanges,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `ws`: HTTP web seeds.
    pub web_seeds: Vec<String>,
    /// `xs`: URLs where the `.torrent` itself can be fetched.
    pub exact_sources: Vec<String>,
    /// `x.pe`: peers to contact directly, as `host:port` or `[v6]:port`.
    pub peers: Vec<String>,
    /// `so`: the file indices the user wants (empty: all files).
    pub select_only: Vec<RangeInclusive<u32>>,
}

impl Magnet {
    /// A magnet carrying only an info hash.
    pub fn new(info_hash: InfoHash) -> Magnet {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            exact_sources: Vec::new(),
            peers: Vec::new(),
            select_only: Vec::new(),
        }
    }

    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        let uri = uri.trim();
        let query = strip_prefix_ignore_case(uri, "magnet:?").ok_or(MagnetError::NotMagnet)?;
        let query = query.split_once('#').map_or(query, |(q, _)| q);

        let mut info_hash: Option<InfoHash> = None;
        let mut saw_v2_hash = false;
        let mut magnet = Magnet::new(InfoHash([0; 20]));
        for (count, param) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            if count >= MAX_PARAMS {
                return Err(MagnetError::TooManyParams);
            }
            // A parameter without `=` carries nothing we could use.
            let Some((raw_key, raw_value)) = param.split_once('=') else { continue };
            let key = base_key(raw_key);
            let value = percent_decode(raw_value, key)?;
            match key {
                "xt" => {
                    if let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") {
                        let hash = parse_info_hash(hash)?;
                        match info_hash {
                            Some(first) if first != hash => {
                                return Err(MagnetError::ConflictingInfoHashes(first, hash));
                            }
                            _ => info_hash = Some(hash),
                        }
                    } else if strip_prefix_ignore_case(&value, "urn:btmh:").is_some() {
                        saw_v2_hash = true;
                    }
                }
                // The first non-empty name wins.
                "dn" if magnet.display_name.is_none() && !value.is_empty() => {
                    magnet.display_name = Some(value);
                }
                "tr" => push_unique(&mut magnet.trackers, value),
                "ws" => push_unique(&mut magnet.web_seeds, value),
                "xs" => push_unique(&mut magnet.exact_sources, value),
                "x.pe" => {
                    if !is_peer_address(&value) {
                        return Err(MagnetError::BadPeer(value));
                    }
                    push_unique(&mut magnet.peers, value);
                }
                "so" => magnet.select_only.extend(parse_select_only(&value)?),
                _ => {}
            }
            if magnet.select_only.len() > MAX_SELECT_RANGES {
                return Err(MagnetError::TooManyRanges);
            }
        }
        magnet.info_hash = match info_hash {
            Some(hash) => hash,
            None if saw_v2_hash => return Err(MagnetError::V2Only),
            None => return Err(MagnetError::MissingInfoHash),
        };
        Ok(magnet)
    }

    /// Whether file `index` is wanted: all files when `so` was absent.
    pub fn selects_file(&self, index: u32) -> bool {
        self.select_only.is_empty() || self.select_only.iter().any(|r| r.contains(&index))
    }

    /// The link as a URI; [`Magnet::parse`] of it gives back an equal `Magnet`.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        let mut push = |key: &str, value: &str| {
            uri.push('&');
            uri.push_str(key);
            uri.push('=');
            crate::percent::encode_into(value.as_bytes(), &mut uri);
        };
        if let Some(name) = &self.display_name {
            push("dn", name);
        }
        for url in &self.trackers {
            push("tr", url);
        }
        for url in &self.web_seeds {
            push("ws", url);
        }
        for url in &self.exact_sources {
            push("xs", url);
        }
        for peer in &self.peers {
            push("x.pe", peer);
        }
        if !self.select_only.is_empty() {
            push("so", &self.select_only_text());
        }
        uri
    }

    /// The `so` selection as written in a link: `0,2,4-6`.
    pub fn select_only_text(&self) -> String {
        let ranges: Vec<String> = self
            .select_only
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        ranges.join(",")
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// `xt.1`, `tr.2`...: the magnet spec numbers repeated parameters; they mean the same as the
/// bare key. `x.pe` is a name in its own right.
fn base_key(key: &str) -> &str {
    match key.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => key,
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

fn percent_decode(raw: &str, key: &str) -> Result<String, MagnetError> {
    let bytes = crate::percent::decode(raw, crate::percent::Plus::Literal)
        .map_err(|_| MagnetError::BadEncoding(key.to_owned()))?;
    String::from_utf8(bytes).map_err(|_| MagnetError::NotUtf8(key.to_owned()))
}

/// 40 hex digits, or 32 RFC 4648 base32 characters (older links), either case.
fn parse_info_hash(s: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(s.chars().take(64).collect());
    match s.len() {
        40 => InfoHash::from_hex(s).ok_or_else(bad),
        32 => {
            let mut out = [0u8; 20];
            let mut acc: u64 = 0;
            let mut bits = 0;
            let mut n = 0;
            for c in s.bytes() {
                let v = match c.to_ascii_uppercase() {
                    c @ b'A'..=b'Z' => c - b'A',
                    c @ b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(bad()),
                };
                acc = (acc << 5) | u64::from(v);
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    // 32 chars × 5 bits = exactly 160 bits = 20 bytes.
                    let slot = out.get_mut(n).ok_or_else(bad)?;
                    *slot = (acc >> bits) as u8;
                    n += 1;
                }
            }
            Ok(InfoHash(out))
        }
        _ => Err(bad()),
    }
}

fn is_peer_address(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((v6, port)) if v6.parse::<Ipv6Addr>().is_ok() => (v6, port),
            _ => return false,
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port))
                if host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                (host, port)
            }
            _ => return false,
        }
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
}

fn parse_select_only(value: &str) -> Result<Vec<RangeInclusive<u32>>, MagnetError> {
    let bad = || MagnetError::BadSelectOnly(value.chars().take(64).collect());
    let mut out = Vec::new();
    for part in value.split(',') {
        if out.len() >= MAX_SELECT_RANGES {
            return Err(MagnetError::TooManyRanges);
        }
        let number = |s: &str| -> Result<u32, MagnetError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let range = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(bad());
                }
                a..=b
            }
            None => {
                let a = number(part)?;
                a..=a
            }
        };
        out.push(range);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c9e15763f722f23e98a29decdfae341b98d53056";

    #[test]
    fn parses_a_full_link() {
        let uri = format!(
            "magnet:?xt=urn:btih:{}&dn=Big%20Buck+Bunny&tr=udp%3A%2F%2Ft1%3A80&tr=wss://t2\
             &tr=udp%3A%2F%2Ft1%3A80&ws=http%3A%2F%2Fseed%2Ff&xs=http://x/t.torrent\
             &x.pe=10.0.0.1:6881&x.pe=[::1]:51413&x.pe=host.example:1&so=0,2,4-6&foo=bar&junk",
            HEX.to_uppercase()
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Big Buck+Bunny"));
        assert_eq!(m.trackers, vec!["udp://t1:80", "wss://t2"]);
        assert_eq!(m.web_seeds, vec!["http://seed/f"]);
        assert_eq!(m.exact_sources, vec!["http://x/t.torrent"]);
        assert_eq!(m.peers, vec!["10.0.0.1:6881", "[::1]:51413", "host.example:1"]);
        assert_eq!(m.select_only, vec![0..=0, 2..=2, 4..=6]);
        assert!(m.selects_file(5) && !m.selects_file(3));
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
    }

    #[test]
    fn base32_and_numbered_keys() {
        // Base32 of the bytes 0x00..0x13.
        let m =
            Magnet::parse("MAGNET:?xt.1=urn:btih:aaaqeayeaudaocajbifqydiob4ibceqt&tr.1=http://a")
                .unwrap();
        let expected: Vec<u8> = (0u8..20).collect();
        assert_eq!(m.info_hash.0.as_slice(), expected.as_slice());
        assert_eq!(m.trackers, vec!["http://a"]);
    }

    #[test]
    fn hybrid_picks_btih_and_v2_only_is_rejected() {
        let v2 = "xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";
        let m = Magnet::parse(&format!("magnet:?{v2}&xt=urn:btih:{HEX}")).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(Magnet::parse(&format!("magnet:?{v2}")), Err(MagnetError::V2Only));
    }

    #[test]
    fn rejects_bad_links() {
        let other = "d".repeat(40);
        let cases: Vec<(String, MagnetError)> = vec![
            ("http://x".into(), MagnetError::NotMagnet),
            ("magnet:?dn=x".into(), MagnetError::MissingInfoHash),
            ("magnet:?xt=urn:btih:abc".into(), MagnetError::BadInfoHash("abc".into())),
            (format!("magnet:?xt=urn:btih:{HEX}&dn=%zz"), MagnetError::BadEncoding("dn".into())),
            (format!("magnet:?xt=urn:btih:{HEX}&dn=%4"), MagnetError::BadEncoding("dn".into())),
            (format!("magnet:?xt=urn:btih:{HEX}&dn=%ff"), MagnetError::NotUtf8("dn".into())),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4"),
                MagnetError::BadPeer("1.2.3.4".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe=[zz]:1"),
                MagnetError::BadPeer("[zz]:1".into()),
            ),
            (format!("magnet:?xt=urn:btih:{HEX}&x.pe=h:0"), MagnetError::BadPeer("h:0".into())),
            (format!("magnet:?xt=urn:btih:{HEX}&so=5-2"), MagnetError::BadSelectOnly("5-2".into())),
            (
                format!("magnet:?xt=urn:btih:{HEX}&so=1,,2"),
                MagnetError::BadSelectOnly("1,,2".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&so=99999999999"),
                MagnetError::BadSelectOnly("99999999999".into()),
            ),
        ];
        for (uri, expected) in cases {
            assert_eq!(Magnet::parse(&uri), Err(expected), "{uri}");
        }
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{other}")),
            Err(MagnetError::ConflictingInfoHashes(..))
        ));
    }

    #[test]
    fn bounds_size_and_counts() {
        let long = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "a".repeat(MAX_MAGNET_LEN));
        assert!(matches!(Magnet::parse(&long), Err(MagnetError::TooLong(_))));
        let many = format!("magnet:?xt=urn:btih:{HEX}{}", "&a=b".repeat(MAX_PARAMS + 1));
        assert_eq!(Magnet::parse(&many), Err(MagnetError::TooManyParams));
        let so: Vec<String> = (0..=MAX_SELECT_RANGES as u32).map(|i| i.to_string()).collect();
        let many_ranges = format!("magnet:?xt=urn:btih:{HEX}&so={}", so.join(","));
        assert_eq!(Magnet::parse(&many_ranges), Err(MagnetError::TooManyRanges));
    }

    #[test]
    fn to_uri_encodes_everything_reserved() {
        let mut m = Magnet::new(InfoHash([0xab; 20]));
        m.display_name = Some("a b&c=d+é%/#".into());
        m.trackers = vec!["http://t/a?x=1&y=2".into()];
        let uri = m.to_uri();
        assert!(uri.contains("dn=a%20b%26c%3Dd%2B%C3%A9%25%2F%23"), "{uri}");
        assert_eq!(Magnet::parse(&uri).unwrap(), m);
    }
}
