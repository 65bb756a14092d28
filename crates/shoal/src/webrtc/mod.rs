//! WebRTC peers: data channels to browsers (and other WebTorrent-speaking peers) over one UDP
//! socket, with str0m as the sans-IO WebRTC stack.
//!
//! - [`endpoint`]: the socket task that owns every connection;
//! - [`channel`]: an open data channel as an `AsyncRead + AsyncWrite` byte stream, over which
//!   the ordinary BitTorrent wire protocol runs (handshake included);
//! - [`stun`]: binding requests to learn our public address (server-reflexive candidate) and
//!   keep the NAT's mapping for our socket;
//! - `pacer` and `probe`: per-connection pacing of outgoing datagrams, and a tail-loss probe
//!   that repairs lost packets sooner than sctp-proto's one-second retransmission timer.
//!
//! Signalling (who offers to whom) is the WebSocket tracker's job: see
//! [`crate::tracker::ws`].

mod channel;
pub mod endpoint;
mod pacer;
mod probe;
mod stun;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use shoal_proto::wire::{Handshake, HANDSHAKE_LEN};
use str0m::Candidate;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

pub use channel::DataChannel;
pub use endpoint::{ConnId, Endpoint, PendingConn};

#[derive(Debug, Error)]
pub enum WebRtcError {
    #[error("WebRTC socket: {0}")]
    Socket(std::io::Error),
    #[error("bad session description: {0}")]
    Sdp(String),
    #[error("too many WebRTC connections (limit {0})")]
    TooManyConnections(usize),
    #[error("no such WebRTC connection (expired or closed)")]
    UnknownConnection,
    #[error("already connected to that WebRTC endpoint")]
    AlreadyConnected,
    #[error("WebRTC connection failed: {0}")]
    Failed(String),
    #[error("the WebRTC endpoint stopped")]
    Stopped,
    #[error("STUN: {0}")]
    Stun(String),
    #[error("WebRTC MTU {0} is out of range ({min}..={max} bytes)", min = str0m::DATAGRAM_MTU_TARGET_MIN, max = str0m::DATAGRAM_MTU_TARGET_MAX)]
    Mtu(usize),
}

#[derive(Clone, Debug)]
pub struct WebRtcConfig {
    /// The UDP socket's address. An unspecified IP means "the address of the default route"
    /// (what other hosts can reach), or loopback on a machine without one.
    pub bind: SocketAddr,
    /// A STUN server (`host:port`) to learn our public address from; none by default.
    pub stun: Option<String>,
    /// Connections pending, open or closing at once, across all torrents.
    pub max_connections: usize,
    /// How long an offer or answer may take to become an open channel.
    pub connect_timeout: Duration,
    /// The largest UDP payload a connection sends (DTLS record with SCTP packet inside).
    /// The default, str0m's 1150 bytes, fits any path a browser's WebRTC works on (tunnels and
    /// TURN included). On a network whose MTU is known, say a LAN with 1500-byte Ethernet,
    /// 1400-1472 sends fewer packets (17 % fewer at 1450 into Chromium; its CPU per MB did
    /// not measurably change, docs/BENCHMARKS.md). Nothing probes the path (sctp-proto has
    /// no PLPMTUD): a value above the path's MTU loses packets.
    pub mtu: usize,
    /// Answer a peer on this host with 1500-byte datagrams whatever `mtu` says: its offer
    /// names only host candidates on loopback or our own address, and its packets must then
    /// come from one of those (one that does not is dropped, and the rule is off from then
    /// on). Loopback carries 64 KiB. Browsers that hide their addresses behind mDNS names are
    /// not recognised. On by default; an explicit `--webrtc-mtu` turns it off.
    pub full_size_on_this_host: bool,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            stun: None,
            max_connections: 256,
            // WebTorrent gives up on its offers after 50 s.
            connect_timeout: Duration::from_secs(50),
            mtu: str0m::DATAGRAM_MTU_TARGET,
            full_size_on_this_host: true,
        }
    }
}

/// Binds the socket, learns our candidates and starts the endpoint.
pub async fn start(config: &WebRtcConfig) -> Result<Endpoint, WebRtcError> {
    // str0m panics on an MTU outside its bounds: refuse it here with a clear error.
    if !(str0m::DATAGRAM_MTU_TARGET_MIN..=str0m::DATAGRAM_MTU_TARGET_MAX).contains(&config.mtu) {
        return Err(WebRtcError::Mtu(config.mtu));
    }
    let ip = match config.bind.ip() {
        ip if !ip.is_unspecified() => ip,
        _ => default_route_ip().await.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let socket = UdpSocket::bind(SocketAddr::new(ip, config.bind.port()))
        .await
        .map_err(WebRtcError::Socket)?;
    let local = socket.local_addr().map_err(WebRtcError::Socket)?;
    let mut candidates = Vec::new();
    let host = Candidate::host(local, "udp").map_err(|e| WebRtcError::Sdp(e.to_string()))?;
    candidates.push(host);
    let mut refresh = None;
    if let Some(server) = &config.stun {
        match stun::resolve(server, local).await {
            Ok(target) => {
                let public = match stun::public_address(&socket, target).await {
                    Ok(public) => {
                        candidates.extend(server_reflexive(public, local));
                        Some(public)
                    }
                    // Host candidates still work on the local network, and the endpoint
                    // asks again: warn, do not fail. The error names the server.
                    Err(e) => {
                        tracing::warn!("{e}");
                        None
                    }
                };
                refresh = Some(stun::StunRefresh::new(target, public, std::time::Instant::now()));
            }
            // Without an address there is nothing to ask again.
            Err(e) => tracing::warn!("{e}; STUN is off"),
        }
    }
    tracing::debug!(%local, candidates = candidates.len(), "webrtc endpoint");
    Endpoint::start(socket, candidates, refresh, config)
}

/// The server-reflexive candidate for `public`, the address a STUN server saw our socket
/// `local` at; none when that is `local` itself (no NAT: the host candidate says it all).
pub(crate) fn server_reflexive(public: SocketAddr, local: SocketAddr) -> Option<Candidate> {
    if public == local {
        return None;
    }
    match Candidate::server_reflexive(public, local, "udp") {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("STUN gave an unusable address {public}: {e}");
            None
        }
    }
}

/// The source address the system would use to reach the internet, found without sending a
/// packet (connecting a UDP socket only picks a route).
async fn default_route_ip() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    // TEST-NET-2: never answered, and connect() sends nothing anyway.
    probe.connect("198.51.100.1:9").await.ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// How long the peer has to send its handshake once the channel is open.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Exchanges BitTorrent handshakes over a fresh channel. Both sides send theirs as soon as the
/// channel opens (as WebTorrent does), so ours goes first and theirs is read after.
pub async fn exchange_handshakes(
    channel: &mut DataChannel,
    ours: &Handshake,
) -> Result<Handshake, WebRtcError> {
    channel
        .write_all(&ours.encode())
        .await
        .map_err(|e| WebRtcError::Failed(format!("sending the handshake: {e}")))?;
    let mut buf = [0u8; HANDSHAKE_LEN];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, channel.read_exact(&mut buf)).await {
        Err(_) => Err(WebRtcError::Failed("no handshake from the peer".into())),
        Ok(Err(e)) => Err(WebRtcError::Failed(format!("reading the handshake: {e}"))),
        Ok(Ok(_)) => match Handshake::parse(&buf) {
            Ok(Some(theirs)) => Ok(theirs),
            Ok(None) => Err(WebRtcError::Failed("truncated handshake".into())),
            Err(e) => Err(WebRtcError::Failed(format!("bad handshake: {e}"))),
        },
    }
}
