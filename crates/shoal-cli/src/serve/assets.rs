//! The web app's files, embedded by `build.rs` with their brotli and gzip encodings and a
//! validator, and how one is answered: the smallest encoding the browser accepts, `304 Not
//! Modified` when its cached copy is current. A page load then costs about a third of the
//! plain bytes, and a reload only the page itself and a few empty answers.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// Its path under `web/`, `/`-separated.
    pub path: &'static str,
    pub bytes: &'static [u8],
    /// A strong validator: a digest of `bytes`, quoted.
    pub etag: &'static str,
    pub br: Option<&'static [u8]>,
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.binary_search_by(|a| a.path.cmp(path)).ok().map(|i| &ASSETS[i])
}

/// A content coding we can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
            Coding::Identity => "identity",
        }
    }
}

/// How much the `Accept-Encoding` value welcomes `coding` (RFC 9110 12.5.3): its own q-value,
/// else that of `*`; identity is welcome unless refused. Malformed entries are ignored.
fn weight(accept: &str, coding: Coding) -> f32 {
    let mut own = None;
    let mut any = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if name.eq_ignore_ascii_case(coding.token()) {
            own = Some(q);
        } else if name == "*" {
            any = Some(q);
        }
    }
    match (own, any, coding) {
        (Some(q), _, _) => q,
        (None, Some(q), _) => q,
        (None, None, Coding::Identity) => 1.0,
        (None, None, _) => 0.0,
    }
}

/// The smallest of our encodings of `asset` that `accept` allows (brotli, then gzip).
pub fn choose(asset: &Asset, accept: Option<&str>) -> (Coding, &'static [u8]) {
    let accept = accept.unwrap_or_default();
    let offers = [(Coding::Brotli, asset.br), (Coding::Gzip, asset.gzip)];
    offers
        .into_iter()
        .filter_map(|(coding, bytes)| Some((coding, bytes?)))
        .find(|(coding, _)| weight(accept, *coding) > 0.0)
        .unwrap_or((Coding::Identity, asset.bytes))
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, RFC 9110 13.1.2).
pub fn matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    if_none_match.split(',').any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// The answer to a GET (or HEAD) for `asset`: `content_type`, revalidated on every use
/// (`no-cache`: the app changes with the binary), its validator, and the chosen encoding.
pub fn respond(asset: &Asset, content_type: &'static str, request: &HeaderMap) -> Response {
    let text = |name| request.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if text(header::IF_NONE_MATCH).is_some_and(|v| matches(v, asset.etag)) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let (coding, bytes) = choose(asset, text(header::ACCEPT_ENCODING));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if coding != Coding::Identity {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    }
    (headers, bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    static PLAIN: &[u8] = b"plain bytes, long enough";
    static ASSET: Asset =
        Asset { path: "app.js", bytes: PLAIN, etag: "\"abc\"", br: Some(b"br"), gzip: Some(b"gz") };

    #[test]
    fn the_smallest_accepted_encoding_is_sent() {
        let pick = |accept| choose(&ASSET, accept).0;
        assert_eq!(pick(Some("gzip, deflate, br, zstd")), Coding::Brotli);
        assert_eq!(pick(Some("gzip, deflate")), Coding::Gzip);
        assert_eq!(pick(Some("br;q=0, gzip;q=0.5")), Coding::Gzip);
        assert_eq!(pick(Some("*")), Coding::Brotli);
        assert_eq!(pick(Some("*;q=0, identity")), Coding::Identity);
        assert_eq!(pick(Some("BR")), Coding::Brotli);
        assert_eq!(pick(Some("br;q=bogus")), Coding::Brotli, "an unreadable q counts as 1");
        assert_eq!(pick(None), Coding::Identity);
        assert_eq!(pick(Some("")), Coding::Identity);
        let plain = Asset { br: None, gzip: None, ..ASSET };
        assert_eq!(choose(&plain, Some("br, gzip")), (Coding::Identity, PLAIN));
    }

    #[test]
    fn a_current_copy_is_not_sent_again() {
        assert!(matches("\"abc\"", "\"abc\""));
        assert!(matches("W/\"abc\"", "\"abc\""));
        assert!(matches("\"x\", \"abc\"", "\"abc\""));
        assert!(matches("*", "\"abc\""));
        assert!(!matches("\"abd\"", "\"abc\""));
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        let answer = respond(&ASSET, "text/javascript", &request);
        assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(answer.headers()[header::ETAG], "\"abc\"");
    }

    #[test]
    fn answers_name_their_encoding_and_vary_on_it() {
        let mut request = HeaderMap::new();
        request.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let answer = respond(&ASSET, "text/javascript", &request);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(answer.headers()[header::VARY], "accept-encoding");
        assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-cache");
    }

    /// The engine, when built, is embedded compressed: brotli well under half its size.
    #[test]
    fn the_engine_travels_compressed() {
        let Some(engine) = find("pkg/shoal_web_bg.wasm") else { return };
        let br = engine.br.expect("the engine has a brotli encoding");
        assert!(br.len() * 2 < engine.bytes.len(), "{} of {}", br.len(), engine.bytes.len());
        assert!(engine.gzip.is_some_and(|g| g.len() < engine.bytes.len()));
    }
}
