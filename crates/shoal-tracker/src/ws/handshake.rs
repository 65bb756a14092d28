//! The HTTP upgrade that opens a WebSocket (RFC 6455 section 4.2), read with a bounded head.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The longest request head we read before giving up.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the request head asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A valid upgrade: the accept token to send back, and `X-Forwarded-For` if any.
    Upgrade { accept: String, forwarded_for: Option<Vec<u8>> },
    /// A plain GET (stats pages are served on the WebSocket port too).
    Get { path: String },
    /// Not something we serve; the status line to answer with.
    Refuse(&'static str),
}

/// Parses a complete request head (`Ok(None)`: not complete yet; `Err`: not HTTP).
pub fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    if req.method != Some("GET") {
        return Ok(Some((Head::Refuse("405 Method Not Allowed"), len)));
    }
    let header = |name: &str| {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    let head = match upgrade(header) {
        Ok(None) => Head::Get { path: req.path.unwrap_or("/").to_owned() },
        Ok(Some(accept)) => {
            let forwarded_for = header("x-forwarded-for").map(|v| v.to_vec());
            Head::Upgrade { accept, forwarded_for }
        }
        Err(status) => Head::Refuse(status),
    };
    Ok(Some((head, len)))
}

/// What a GET's headers (looked up by lower-case name) ask for: `Ok(None)` is no upgrade,
/// `Ok(Some(accept))` a valid one with the token to answer, `Err` a bad one with the status
/// line to refuse it with. Shared by our own listener and servers that hand connections over.
pub fn upgrade<'a>(
    header: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<Option<String>, &'static str> {
    let has_token = |name: &str, token: &str| {
        header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") {
        return Ok(None);
    }
    if !has_token("connection", "upgrade") || header("sec-websocket-version") != Some(b"13") {
        return Err("400 Bad Request");
    }
    let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty() && k.len() <= 64) else {
        return Err("400 Bad Request");
    };
    Ok(Some(accept_token(key)))
}

pub fn accept_token(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

pub fn switching_protocols(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

pub fn plain_response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_token_matches_rfc_example() {
        assert_eq!(accept_token(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_upgrades_and_plain_gets() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nrest";
        let (head, len) = parse(req).unwrap().unwrap();
        assert_eq!(&req[len..], b"rest");
        assert!(
            matches!(head, Head::Upgrade { ref accept, .. } if accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(parse(&req[..20]).unwrap(), None);
        let (head, _) = parse(b"GET /stats HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(head, Head::Get { path: "/stats".into() });
        let no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(parse(no_key).unwrap().unwrap().0, Head::Refuse("400 Bad Request"));
        assert!(parse(b"\x16\x03\x01garbage\r\n\r\n").is_err());
    }
}
