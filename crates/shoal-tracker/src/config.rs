//! Everything an operator can tune, with defaults that are safe on the open internet. Read from
//! a TOML file (`--config`), every key optional:
//!
//! ```toml
//! http = "0.0.0.0:8000"
//! udp = "0.0.0.0:8000"
//! ws = "0.0.0.0:8001"
//! tls_cert = "cert.pem"          # with tls_key: the ws (and http) listeners speak TLS
//! tls_key = "key.pem"
//! interval_secs = 1800           # HTTP/UDP re-announce interval
//! ws_interval_secs = 120         # WebSocket re-announce interval
//! peer_timeout_secs = 3600
//! default_numwant = 50
//! max_numwant = 100
//! max_peers_per_swarm = 10000
//! max_swarms = 1000000
//! max_ws_connections = 100000
//! max_http_connections = 10000
//! max_message_len = 65536
//! max_offers_per_announce = 10
//! ws_messages_per_sec = 50
//! ws_message_burst = 200
//! ws_max_torrents_per_connection = 256
//! ws_outbox_len = 32
//! ws_send_buffer = 0             # bytes of kernel send buffer per ws connection; 0: autotuned
//! per_ip_requests_per_sec = 0    # 0: no per-IP limit
//! per_ip_burst = 0
//! allow_list = ["<40 hex digits>"]   # absent: every torrent is tracked
//! trust_x_forwarded_for = false
//! persist_file = "swarms.json"   # absent: nothing is saved
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP announce/scrape (and stats) listener.
    pub http: Option<SocketAddr>,
    /// UDP (BEP 15) listener.
    pub udp: Option<SocketAddr>,
    /// WebSocket (WebTorrent) listener; also answers `/stats` and `/metrics`.
    pub ws: Option<SocketAddr>,
    /// PEM certificate chain and key: when both are set, the WebSocket and HTTP listeners
    /// speak TLS (`wss://`, `https://`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub interval_secs: u32,
    pub ws_interval_secs: u32,
    /// A peer that has not announced for this long is dropped.
    pub peer_timeout_secs: u32,
    /// Peers returned when a client does not say how many it wants.
    pub default_numwant: u32,
    /// The most peers one announce answer carries.
    pub max_numwant: u32,
    /// New peers are refused once a swarm has this many.
    pub max_peers_per_swarm: u32,
    /// New torrents are refused once the tracker knows this many (per kind: classic and ws).
    pub max_swarms: u32,
    /// Connections beyond this are closed at once.
    pub max_ws_connections: u32,
    /// Open HTTP connections (keep-alive ones included) beyond this are closed at once, so a
    /// flood of idle sockets cannot exhaust file descriptors or memory.
    pub max_http_connections: u32,
    /// The longest WebSocket message (after reassembly of fragments).
    pub max_message_len: usize,
    /// Offers of one announce forwarded at most (the rest are dropped).
    pub max_offers_per_announce: u32,
    /// Per WebSocket connection: sustained messages per second and burst; a connection above
    /// it is closed (policy violation).
    pub ws_messages_per_sec: u32,
    pub ws_message_burst: u32,
    /// Torrents one WebSocket connection may be in at once (WebTorrent shares one socket per
    /// tracker among all the torrents of a page); announces for more are refused.
    pub ws_max_torrents_per_connection: u32,
    /// Relayed messages waiting for a slow WebSocket peer; more are dropped.
    pub ws_outbox_len: usize,
    /// The kernel's send buffer for each WebSocket connection, in bytes; 0 keeps the system's
    /// autotuning. Relays to a peer that stops reading sit first in this buffer and only then
    /// in the outbox, so a small one bounds kernel memory per stalled peer (Linux doubles the
    /// value and enforces a floor of a few KiB).
    pub ws_send_buffer: u32,
    /// A WebSocket connection that sends nothing for this long is closed.
    pub ws_idle_timeout_secs: u32,
    /// Time allowed for the TLS and WebSocket handshakes.
    pub handshake_timeout_secs: u32,
    /// Per client IP, over all protocols: requests per second and burst; 0 disables.
    pub per_ip_requests_per_sec: u32,
    pub per_ip_burst: u32,
    /// Only these torrents (hex info hashes) are tracked; `None` tracks all.
    pub allow_list: Option<Vec<String>>,
    /// Use the last `X-Forwarded-For` address (the one our reverse proxy appended) as the
    /// client's. Only safe when every request comes through that proxy.
    pub trust_x_forwarded_for: bool,
    /// Save classic (HTTP/UDP) swarms here on shutdown and every `persist_interval_secs`, and
    /// restore them on start. WebSocket peers are not saved: they live on their sockets.
    pub persist_file: Option<PathBuf>,
    pub persist_interval_secs: u32,
    /// How often expired peers are swept.
    pub sweep_interval_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: None,
            udp: None,
            ws: None,
            tls_cert: None,
            tls_key: None,
            interval_secs: 1800,
            ws_interval_secs: 120,
            peer_timeout_secs: 3600,
            default_numwant: 50,
            max_numwant: 100,
            max_peers_per_swarm: 10_000,
            max_swarms: 1_000_000,
            max_ws_connections: 100_000,
            max_http_connections: 10_000,
            max_message_len: shoal_tracker_proto::ws::MAX_MESSAGE_LEN,
            max_offers_per_announce: 10,
            ws_messages_per_sec: 50,
            ws_message_burst: 200,
            ws_max_torrents_per_connection: 256,
            ws_outbox_len: 32,
            ws_send_buffer: 0,
            ws_idle_timeout_secs: 600,
            handshake_timeout_secs: 10,
            per_ip_requests_per_sec: 0,
            per_ip_burst: 0,
            allow_list: None,
            trust_x_forwarded_for: false,
            persist_file: None,
            persist_interval_secs: 300,
            sweep_interval_secs: 30,
        }
    }
}

impl Config {
    /// Reads a TOML config file; absent keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.http.is_none() && self.udp.is_none() && self.ws.is_none() {
            return bad("no listener: set at least one of http, udp, ws");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        if self.interval_secs == 0 || self.ws_interval_secs == 0 || self.peer_timeout_secs == 0 {
            return bad("intervals and timeouts must be at least 1 second");
        }
        if self.max_message_len < 1024 || self.max_message_len > 16 << 20 {
            return bad("max_message_len must be between 1 KiB and 16 MiB");
        }
        if self.ws_outbox_len == 0 {
            return bad("ws_outbox_len must be at least 1");
        }
        if let Some(list) = &self.allow_list {
            if let Some(h) = list.iter().find(|h| shoal_proto::InfoHash::from_hex(h).is_none()) {
                return Err(ConfigError::Invalid(format!(
                    "allow_list: not a hex info hash: {h:?}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.ws_idle_timeout_secs.max(1)))
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.handshake_timeout_secs.max(1)))
    }

    /// What a client gets when it asks for `numwant` peers (or nothing).
    pub(crate) fn numwant(&self, asked: Option<u32>) -> usize {
        asked.unwrap_or(self.default_numwant).min(self.max_numwant) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "ws = \"127.0.0.1:0\"\nmax_offers_per_announce = 3\n").unwrap();
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.max_offers_per_announce, 3);
        assert_eq!(c.interval_secs, Config::default().interval_secs);
        c.validate().unwrap();
        std::fs::write(&path, "typo_key = 1\n").unwrap();
        assert!(Config::from_file(&path).unwrap_err().to_string().contains("typo_key"));
    }

    #[test]
    fn rejects_unusable_values() {
        assert!(Config::default().validate().is_err());
        let c = Config {
            ws: Some("127.0.0.1:0".parse().unwrap()),
            allow_list: Some(vec!["zz".into()]),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("allow_list"));
        let c = Config { ws: c.ws, tls_cert: Some("c.pem".into()), ..Config::default() };
        assert!(c.validate().is_err());
    }
}
