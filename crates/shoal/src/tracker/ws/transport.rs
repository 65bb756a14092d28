//! The WebSocket tracker's transport: where a `ws://` or `wss://` URL points, TCP, TLS with
//! the platform's roots, and the WebSocket upgrade. What travels over it is
//! [`WsClient`](shoal_tracker_proto::ws::WsClient)'s business.

use std::sync::Arc;

use shoal_tracker_proto::ws::MAX_MESSAGE_LEN;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::tracker::TrackerError;

/// Where a `ws://` or `wss://` URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct WsUrl {
    tls: bool,
    host: String,
    port: u16,
}

impl WsUrl {
    pub(super) fn parse(url: &str) -> Result<WsUrl, TrackerError> {
        let invalid = |why: &str| TrackerError::InvalidUrl(format!("{url}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(TrackerError::UnsupportedScheme(url.to_owned())),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(invalid("credentials in the URL"));
        }
        let default_port = if tls { 443 } else { 80 };
        let parse_port = |p: &str| p.parse::<u16>().map_err(|_| invalid("bad port"));
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            // [v6] or [v6]:port
            let (host, rest) = bracketed.split_once(']').ok_or_else(|| invalid("unclosed ["))?;
            match rest {
                "" => (host, default_port),
                _ => {
                    (host, parse_port(rest.strip_prefix(':').ok_or_else(|| invalid("bad port"))?)?)
                }
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, parse_port(port)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(WsUrl { tls, host: host.to_owned(), port })
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens the socket and upgrades it. Owned arguments, so the future borrows nothing while the
/// socket task keeps serving announces and timers during the attempt.
pub(super) async fn connect(
    url: String,
    target: WsUrl,
) -> Result<tokio_tungstenite::WebSocketStream<TlsOrPlain>, String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", target.host, target.port))?;
    let _ = tcp.set_nodelay(true);
    let transport = if target.tls {
        let config = tls_config()?;
        let name = rustls_pki_name(&target.host)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", target.host))?;
        Transport::Tls(Box::new(tls))
    } else {
        Transport::Plain(tcp)
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE_LEN);
    config.max_frame_size = Some(MAX_MESSAGE_LEN);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(
        url.as_str(),
        TlsOrPlain(transport),
        Some(config),
    )
    .await
    .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    Ok(ws)
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::ConfigVerifierExt;
    // The platform's roots (and SSL_CERT_FILE, on Linux). ring is installed as the process
    // provider by `TrackerClient::new`.
    rustls::ClientConfig::with_platform_verifier()
        .map(Arc::new)
        .map_err(|e| format!("TLS setup: {e}"))
}

fn rustls_pki_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("bad TLS server name {host:?}: {e}"))
}

/// A TCP or TLS stream, so tungstenite sees one type.
pub(super) struct TlsOrPlain(Transport);

impl AsyncRead for TlsOrPlain {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TlsOrPlain {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.0 {
            Transport::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_websocket_urls() {
        let u = WsUrl::parse("wss://tracker.example:8443/announce").unwrap();
        assert_eq!(u, WsUrl { tls: true, host: "tracker.example".into(), port: 8443 });
        let u = WsUrl::parse("ws://127.0.0.1").unwrap();
        assert_eq!(u, WsUrl { tls: false, host: "127.0.0.1".into(), port: 80 });
        let u = WsUrl::parse("WSS://[::1]/x").unwrap();
        assert_eq!(u, WsUrl { tls: true, host: "::1".into(), port: 443 });
        let u = WsUrl::parse("ws://[::1]:9000").unwrap();
        assert_eq!(u, WsUrl { tls: false, host: "::1".into(), port: 9000 });
        assert!(WsUrl::parse("http://x").is_err());
        assert!(WsUrl::parse("ws://:80").is_err());
        assert!(WsUrl::parse("ws://host:99999").is_err());
        assert!(WsUrl::parse("ws://user@host").is_err());
    }
}
