//! Building announce and scrape URLs on top of the tracker's base URL.

use shoal_proto::InfoHash;

use crate::percent;
use crate::types::AnnounceRequest;

/// The announce URL for `req`: `base` with the BEP 3 parameters appended. A base that already
/// carries a query (private trackers put a passkey there) keeps it; a fragment is dropped,
/// since it is never sent to the server anyway.
pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let mut url = String::with_capacity(base.len() + 256);
    start_query(base, &mut url);
    url.push_str("info_hash=");
    percent::encode_into(&req.info_hash.0, &mut url);
    url.push_str("&peer_id=");
    percent::encode_into(&req.peer_id.0, &mut url);
    push_param(&mut url, "port", req.port);
    push_param(&mut url, "uploaded", req.uploaded);
    push_param(&mut url, "downloaded", req.downloaded);
    push_param(&mut url, "left", req.left_on_wire());
    push_param(&mut url, "compact", u8::from(req.compact));
    if let Some(event) = req.event.http_name() {
        push_param(&mut url, "event", event);
    }
    if let Some(num_want) = req.num_want {
        push_param(&mut url, "numwant", num_want);
    }
    // libtorrent and most clients send the key as 8 hex digits.
    push_param(&mut url, "key", format_args!("{:08X}", req.key));
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        percent::encode_into(id, &mut url);
    }
    url
}

/// The scrape URL for an announce URL, by the convention of BEP 48: the last path segment must
/// begin with `announce`, which becomes `scrape` (`/x/announce.php?k=v` becomes
/// `/x/scrape.php?k=v`). `None` means the tracker does not support scraping.
pub fn scrape_url(announce: &str) -> Option<String> {
    let without_fragment = announce.split('#').next().unwrap_or(announce);
    let (before_query, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    let authority_start = before_query.find("://")? + 3;
    let path_start = authority_start + before_query[authority_start..].find('/')?;
    let last_slash = before_query.rfind('/')?;
    if last_slash < path_start {
        return None;
    }
    let segment = &before_query[last_slash + 1..];
    let rest = segment.strip_prefix("announce")?;
    let mut url = String::with_capacity(announce.len());
    url.push_str(&before_query[..=last_slash]);
    url.push_str("scrape");
    url.push_str(rest);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Some(url)
}

/// A scrape URL (from [`scrape_url`]) with one `info_hash` parameter per torrent.
pub fn scrape_url_for(scrape_base: &str, info_hashes: &[InfoHash]) -> String {
    let mut url = String::with_capacity(scrape_base.len() + info_hashes.len() * 72);
    start_query(scrape_base, &mut url);
    for (i, hash) in info_hashes.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url.push_str("info_hash=");
        percent::encode_into(&hash.0, &mut url);
    }
    url
}

/// Copies `base` without its fragment and ends it where the next parameter can go.
fn start_query(base: &str, url: &mut String) {
    let base = base.split('#').next().unwrap_or(base);
    url.push_str(base);
    match base.find('?') {
        None => url.push('?'),
        Some(_) if base.ends_with('?') || base.ends_with('&') => {}
        Some(_) => url.push('&'),
    }
}

fn push_param(url: &mut String, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(url, "&{name}={value}");
}

#[cfg(test)]
mod tests {
    use shoal_proto::PeerId;

    use super::*;
    use crate::types::{AnnounceEvent, LEFT_WHEN_UNKNOWN};

    fn request() -> AnnounceRequest {
        let mut hash = [0u8; 20];
        hash[0] = 0x12;
        hash[1] = b' ';
        hash[2] = b'a';
        hash[19] = 0xff;
        AnnounceRequest {
            uploaded: 10,
            downloaded: 20,
            left: Some(30),
            event: AnnounceEvent::Started,
            num_want: Some(50),
            key: 0xabc,
            ..AnnounceRequest::new(InfoHash(hash), PeerId(*b"-SH0100-abcdefghijkl"), 6881)
        }
    }

    #[test]
    fn announce_url_encodes_every_parameter() {
        let url = announce_url("http://t.example/announce", &request());
        assert_eq!(
            url,
            "http://t.example/announce?info_hash=%12%20a%00%00%00%00%00%00%00%00%00%00%00%00%00%00\
             %00%00%FF&peer_id=-SH0100-abcdefghijkl&port=6881&uploaded=10&downloaded=20&left=30\
             &compact=1&event=started&numwant=50&key=00000ABC"
        );
    }

    #[test]
    fn announce_url_keeps_an_existing_query_and_drops_the_fragment() {
        let mut req = request();
        req.event = AnnounceEvent::None;
        req.num_want = None;
        req.left = None;
        req.compact = false;
        req.tracker_id = Some(b"id 1".to_vec());
        let url = announce_url("https://t.example/a?passkey=xyz#frag", &req);
        assert!(url.starts_with("https://t.example/a?passkey=xyz&info_hash="), "{url}");
        assert!(!url.contains("event="));
        assert!(!url.contains("numwant="));
        assert!(!url.contains('#'));
        assert!(url.contains(&format!("&left={LEFT_WHEN_UNKNOWN}&compact=0&")));
        assert!(url.ends_with("&trackerid=id%201"));
        let url = announce_url("http://t/a?x=1&", &req);
        assert!(url.starts_with("http://t/a?x=1&info_hash="));
    }

    #[test]
    fn scrape_url_follows_the_announce_convention() {
        let cases = [
            ("http://example.com/announce", Some("http://example.com/scrape")),
            ("http://example.com/x/announce", Some("http://example.com/x/scrape")),
            ("http://example.com/announce.php", Some("http://example.com/scrape.php")),
            ("http://example.com/a?x2%0644", None),
            ("http://example.com/announce?x2%0644", Some("http://example.com/scrape?x2%0644")),
            ("http://example.com/x%064announce", None),
            ("http://example.com/announce/x", None),
            ("http://example.com", None),
            ("http://example.com/", None),
            ("udp://example.com:80/announce#f", Some("udp://example.com:80/scrape")),
            ("announce", None),
        ];
        for (announce, scrape) in cases {
            assert_eq!(scrape_url(announce).as_deref(), scrape, "{announce}");
        }
    }

    #[test]
    fn scrape_url_lists_every_hash() {
        let url = scrape_url_for("http://t/scrape?k=1", &[InfoHash([1; 20]), InfoHash([b'a'; 20])]);
        assert_eq!(
            url,
            format!(
                "http://t/scrape?k=1&info_hash={}&info_hash={}",
                "%01".repeat(20),
                "a".repeat(20)
            )
        );
    }
}
