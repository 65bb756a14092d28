//! Who may drive the server: the management API (`/api/...` but its description, and
//! Transmission RPC) changes what the machine downloads and where, so it is guarded; the app,
//! the shared files, the web seed and the tracker stay public.
//!
//! - Bound to loopback and reached as this machine, the management API works as is; bound
//!   elsewhere, or named by a `--public-host` other than this machine, or behind TLS (both
//!   mean a reverse proxy or an address others reach), it needs `--auth USER:PASSWORD` (HTTP
//!   Basic), and without it the management API is off. Without `--auth`, a request a proxy
//!   forwarded (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) is refused too: a proxy in front
//!   of a loopback server would otherwise hand the API to everyone it serves.
//! - A request whose `Host` is not this server's own name (an IP, `localhost`, or
//!   `--public-host`) is refused: a web page that points its own domain at 127.0.0.1 (DNS
//!   rebinding) cannot reach the API through the victim's browser.
//! - A request from a page of another origin (`Origin` set, and not this server) is refused;
//!   with no `Access-Control-Allow-*` headers a browser does not let such a page read answers
//!   either, and JSON bodies need a preflight that is never granted.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::json;

/// The management API's guard.
#[derive(Clone, Debug)]
pub struct Access {
    enabled: bool,
    /// `Basic <base64(user:password)>`, as the `Authorization` header carries it.
    expected_authorization: Option<String>,
    /// `--public-host`, lowercased.
    public_host: Option<String>,
}

impl Access {
    /// The guard for a server listening on `ip` (with TLS or not), named `public_host` if
    /// given, with `auth` (`USER:PASSWORD`) if given.
    pub fn new(ip: IpAddr, tls: bool, auth: Option<&str>, public_host: Option<&str>) -> Access {
        let expected_authorization = auth.map(|credentials| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
        });
        let public_host = public_host.map(str::to_ascii_lowercase);
        let this_machine_only = ip.is_loopback()
            && !tls
            && public_host.as_deref().is_none_or(|h| {
                let h = h.trim_matches(['[', ']']);
                h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            });
        Access {
            enabled: this_machine_only || expected_authorization.is_some(),
            expected_authorization,
            public_host,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// What the app's page is told: `open` (use the library), `auth` (offer to sign in), or
    /// `None` (no library to offer).
    pub fn page_hint(&self) -> Option<&'static str> {
        match (self.enabled, &self.expected_authorization) {
            (false, _) => None,
            (true, None) => Some("open"),
            (true, Some(_)) => Some("auth"),
        }
    }

    /// Whether a request with these headers may use the management API.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.enabled {
            return Err(Refusal::Off);
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.own_host(host) {
            return Err(Refusal::ForeignHost);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, h)| h);
            if same.is_none_or(|h| !h.eq_ignore_ascii_case(host)) {
                return Err(Refusal::ForeignOrigin);
            }
        }
        match &self.expected_authorization {
            Some(expected) => {
                let given = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
                if !given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
                    return Err(Refusal::Unauthorized);
                }
            }
            None => {
                let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"];
                if forwarded.iter().any(|name| headers.contains_key(*name)) {
                    return Err(Refusal::Proxied);
                }
            }
        }
        Ok(())
    }

    /// `Host` names this server: an IP literal, `localhost`, or the public host name.
    fn own_host(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6.split_once(']').is_some_and(|(ip, _)| ip.parse::<IpAddr>().is_ok())
            }
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        let name = name.to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self.public_host.as_deref().is_some_and(|p| p.trim_matches(['[', ']']) == name)
    }
}

/// `USER:PASSWORD` from the first line of `path` (`--auth-file`): bounded, and refused unless
/// it has both parts.
pub fn read_auth_file(path: &std::path::Path) -> Result<String, String> {
    let bytes = shoal::resume::read_bounded(path, 4096)
        .ok_or_else(|| format!("cannot read {} (or it is over 4 KiB)", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim();
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(line.to_owned()),
        _ => Err(format!("{}: the first line must be USER:PASSWORD", path.display())),
    }
}

/// Why a request may not use the management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the management API is off: others can reach this server and it has no --auth")]
    Off,
    #[error("this server does not answer to that Host")]
    ForeignHost,
    #[error("requests from other sites are refused")]
    ForeignOrigin,
    #[error("credentials required")]
    Unauthorized,
    #[error("a request through a proxy needs the server to have --auth")]
    Proxied,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Off | Refusal::ForeignHost | Refusal::ForeignOrigin | Refusal::Proxied => {
                StatusCode::FORBIDDEN
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if self == Refusal::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"shoal\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware guarding the management routes.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    match access.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn loopback_needs_nothing_but_its_own_host_and_origin() {
        let access = Access::new(IpAddr::from([127, 0, 0, 1]), false, None, None);
        assert!(access.check(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(access.check(&headers(&[("host", "localhost:8080")])).is_ok());
        assert!(access.check(&headers(&[("host", "[::1]:8080")])).is_ok());
        let rebound = access.check(&headers(&[("host", "evil.example:8080")]));
        assert_eq!(rebound, Err(Refusal::ForeignHost));
        let foreign = access
            .check(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]));
        assert_eq!(foreign, Err(Refusal::ForeignOrigin));
        let same = access
            .check(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]));
        assert!(same.is_ok());
        assert!(access.check(&headers(&[])).is_err(), "no Host at all");
        // A proxy in front of it: not without a password.
        let proxied = access
            .check(&headers(&[("host", "127.0.0.1:8080"), ("x-forwarded-for", "203.0.113.9")]));
        assert_eq!(proxied, Err(Refusal::Proxied));
        // Named for others, or behind TLS: a password is needed.
        assert!(!Access::new(IpAddr::from([127, 0, 0, 1]), false, None, Some("media.example"))
            .enabled());
        assert!(!Access::new(IpAddr::from([127, 0, 0, 1]), true, None, None).enabled());
        assert!(Access::new(IpAddr::from([127, 0, 0, 1]), false, None, Some("localhost")).enabled());
    }

    #[test]
    fn an_auth_file_holds_user_and_password_on_its_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth");
        std::fs::write(&path, "ann:s3cret:with colon\nignored\n").expect("write");
        assert_eq!(read_auth_file(&path), Ok("ann:s3cret:with colon".to_owned()));
        std::fs::write(&path, "no separator\n").expect("write");
        assert!(read_auth_file(&path).is_err());
        std::fs::write(&path, ":nouser").expect("write");
        assert!(read_auth_file(&path).is_err());
        assert!(read_auth_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn beyond_loopback_it_is_off_without_auth_and_asks_for_it_with() {
        let off = Access::new(IpAddr::from([0, 0, 0, 0]), false, None, None);
        assert!(!off.enabled());
        let refused = off.check(&headers(&[("host", "10.0.0.1:8080")]));
        assert_eq!(refused, Err(Refusal::Off));

        let on =
            Access::new(IpAddr::from([0, 0, 0, 0]), false, Some("ann:secret"), Some("media.lan"));
        let host = ("host", "media.lan:8080");
        let missing = on.check(&headers(&[host]));
        assert_eq!(missing, Err(Refusal::Unauthorized));
        let wrong = on.check(&headers(&[host, ("authorization", "Basic YW5uOndyb25n")]));
        assert_eq!(wrong, Err(Refusal::Unauthorized));
        // base64("ann:secret"); a proxy may carry it.
        let good = ("authorization", "Basic YW5uOnNlY3JldA==");
        assert!(on.check(&headers(&[host, good])).is_ok());
        assert!(on.check(&headers(&[host, good, ("x-forwarded-for", "203.0.113.9")])).is_ok());
    }
}
