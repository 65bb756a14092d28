//! Tracker clients: announce and scrape over HTTP(S) (BEP 3, 23, 48) and UDP (BEP 15), and
//! announce over WebSocket (WebTorrent signalling, [`ws`]).
//!
//! One [`TrackerClient`] is shared by every torrent of a session: it holds the HTTP connection
//! pool and the UDP connection ids. What to announce when, and to which URL, is decided by the
//! sans-IO [`shoal_tracker_proto::Announcer`]; this module only carries out one request.

pub(crate) mod http;
mod udp;
pub mod ws;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shoal_proto::InfoHash;
use shoal_tracker_proto::http::HttpError;
use shoal_tracker_proto::udp::{UdpError, UdpUrlError};
use shoal_tracker_proto::{AnnounceRequest, AnnounceResponse, ScrapeResponse};
use thiserror::Error;

/// Tunables of the tracker clients.
#[derive(Clone, Debug)]
pub struct TrackerClientConfig {
    /// The whole HTTP exchange, connect to last body byte.
    pub http_timeout: Duration,
    pub http_connect_timeout: Duration,
    /// An HTTP answer larger than this is refused while it streams in.
    pub max_response_bytes: usize,
    pub max_redirects: usize,
    /// BEP 15's retransmission timeout for the first try; it doubles on each retry. The spec
    /// says 15 s; tests lower it.
    pub udp_base_timeout: Duration,
    /// Retransmissions after the first try (BEP 15 allows 8, i.e. about an hour; a client
    /// with other trackers and the DHT gives up sooner).
    pub udp_max_retries: u32,
    /// How long a UDP connection id is reused (BEP 15: one minute).
    pub connection_id_ttl: Duration,
    pub user_agent: String,
    /// Send requests from this address: the specific IP the session listens on, so that the
    /// tracker records the address peers can reach us at (it takes the request's source IP).
    /// `None`: the system chooses.
    pub local_ip: Option<std::net::IpAddr>,
}

impl Default for TrackerClientConfig {
    fn default() -> Self {
        TrackerClientConfig {
            http_timeout: Duration::from_secs(30),
            http_connect_timeout: Duration::from_secs(10),
            max_response_bytes: 2 * 1024 * 1024,
            max_redirects: 3,
            udp_base_timeout: Duration::from_secs(15),
            udp_max_retries: 2,
            connection_id_ttl: shoal_tracker_proto::udp::CONNECTION_ID_LIFETIME,
            user_agent: concat!("Shoal/", env!("CARGO_PKG_VERSION")).to_owned(),
            local_ip: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum TrackerError {
    #[error("unsupported tracker URL scheme in {0:?}")]
    UnsupportedScheme(String),
    #[error("WebSocket tracker {0:?} needs WebRTC, which is off")]
    WebRtcDisabled(String),
    #[error("invalid tracker URL: {0}")]
    InvalidUrl(String),
    #[error("invalid UDP tracker URL: {0}")]
    InvalidUdpUrl(#[from] UdpUrlError),
    #[error("tracker {0:?} does not support scrape")]
    ScrapeUnsupported(String),
    #[error("could not resolve tracker host {host:?}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("tracker host {0:?} has no address")]
    NoAddress(String),
    #[error("tracker did not answer in time")]
    Timeout,
    /// The tracker refused the request (`failure reason`, or a UDP error packet).
    #[error("tracker failure: {0}")]
    Failure(String),
    #[error("HTTP tracker request failed: {0}")]
    Http(String),
    #[error("HTTP tracker answered with status {0}")]
    HttpStatus(u16),
    #[error("tracker response is larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error(transparent)]
    HttpProtocol(HttpError),
    #[error(transparent)]
    UdpProtocol(#[from] UdpError),
    #[error("UDP tracker answered with an unexpected action")]
    UnexpectedAction,
    #[error("UDP tracker scrape answered for {got} torrents, we asked for {asked}")]
    ScrapeCountMismatch { asked: usize, got: usize },
    #[error("UDP tracker I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<HttpError> for TrackerError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Failure(reason) => TrackerError::Failure(reason),
            other => TrackerError::HttpProtocol(other),
        }
    }
}

/// The tracker clients of a session, shared by all its torrents.
pub struct TrackerClient {
    http: reqwest::Client,
    udp: udp::ConnectionIds,
    config: TrackerClientConfig,
    /// WebSocket trackers, once the session runs a WebRTC endpoint.
    ws: OnceLock<Arc<ws::WsTrackers>>,
}

impl TrackerClient {
    pub fn new(config: TrackerClientConfig) -> Result<Self, TrackerError> {
        // reqwest is built without a bundled crypto provider; use ring unless the process
        // already chose one (an error here only means it did).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.http_timeout)
            .connect_timeout(config.http_connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(config.max_redirects))
            // No keep-alive: announces are minutes apart, and trackers such as opentracker
            // close the connection after each answer without saying so, which makes a reused
            // connection fail with "connection reset".
            .pool_max_idle_per_host(0)
            .local_address(config.local_ip)
            .build()
            .map_err(|e| TrackerError::Http(http::error_chain(&e)))?;
        Ok(TrackerClient { http, udp: udp::ConnectionIds::default(), config, ws: OnceLock::new() })
    }

    pub fn config(&self) -> &TrackerClientConfig {
        &self.config
    }

    /// Enables `ws://` and `wss://` trackers (set once, by the session).
    pub fn enable_websocket(&self, trackers: Arc<ws::WsTrackers>) {
        let _ = self.ws.set(trackers);
    }

    /// Whether `ws://` trackers can be announced to.
    pub fn websocket_enabled(&self) -> bool {
        self.ws.get().is_some()
    }

    /// Announces `req` to the tracker at `url` (`http://`, `https://` or `udp://`).
    pub async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        match scheme(url) {
            Some(Scheme::Http) => http::announce(&self.http, &self.config, url, req).await,
            Some(Scheme::Udp) => udp::announce(&self.udp, &self.config, url, req).await,
            Some(Scheme::Ws) => match self.ws.get() {
                Some(ws) => {
                    let offers = req.num_want.unwrap_or(ws::DEFAULT_OFFERS);
                    ws.announce(url, req, offers).await
                }
                None => Err(TrackerError::WebRtcDisabled(url.to_owned())),
            },
            None => Err(TrackerError::UnsupportedScheme(url.to_owned())),
        }
    }

    /// Asks the tracker at `url` (an announce URL) for the swarm counts of `info_hashes`.
    pub async fn scrape(
        &self,
        url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<ScrapeResponse, TrackerError> {
        match scheme(url) {
            Some(Scheme::Http) => http::scrape(&self.http, &self.config, url, info_hashes).await,
            Some(Scheme::Udp) => udp::scrape(&self.udp, &self.config, url, info_hashes).await,
            Some(Scheme::Ws) => Err(TrackerError::ScrapeUnsupported(url.to_owned())),
            None => Err(TrackerError::UnsupportedScheme(url.to_owned())),
        }
    }
}

/// Announces `req` to the tracker at `url`; see [`TrackerClient::announce`].
pub async fn announce(
    client: &TrackerClient,
    url: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    client.announce(url, req).await
}

/// Scrapes the tracker at `url`; see [`TrackerClient::scrape`].
pub async fn scrape(
    client: &TrackerClient,
    url: &str,
    info_hashes: &[InfoHash],
) -> Result<ScrapeResponse, TrackerError> {
    client.scrape(url, info_hashes).await
}

/// Whether `url` is a WebSocket (WebRTC signalling) tracker: `ws://` or `wss://`.
pub fn is_websocket(url: &str) -> bool {
    matches!(scheme(url), Some(Scheme::Ws))
}

enum Scheme {
    Http,
    Udp,
    Ws,
}

fn scheme(url: &str) -> Option<Scheme> {
    let (scheme, _) = url.split_once("://")?;
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        Some(Scheme::Http)
    } else if scheme.eq_ignore_ascii_case("udp") {
        Some(Scheme::Udp)
    } else if scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss") {
        Some(Scheme::Ws)
    } else {
        None
    }
}
