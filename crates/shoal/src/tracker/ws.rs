//! The WebSocket tracker client: WebTorrent's signalling, so browser peers can reach us.
//!
//! One socket per tracker URL carries every torrent of the session. An announce goes out with
//! fresh WebRTC offers (full SDP, no trickle); the tracker forwards each to a different peer,
//! whose answer comes back matched by `offer_id`. Offers from other peers arrive unasked, for
//! torrents we announced on that socket, and are answered at once. Every connection that
//! opens exchanges BitTorrent handshakes over its data channel and is handed to the session,
//! which routes it to its torrent like an incoming TCP connection.
//!
//! The socket reconnects with exponential backoff; announces made while it is down fail, and
//! the announcer retries them on its own schedule. Offers that get no answer in
//! [`WebRtcConfig::connect_timeout`](crate::webrtc::WebRtcConfig) expire in the endpoint.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_proto::wire::Handshake;
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::types::{clamp_interval, AnnounceEvent};
use shoal_tracker_proto::ws::{
    decode_response, encode_request, WsAnnounce, WsAnswer, WsOffer, WsRequest, WsResponse,
    MAX_MESSAGE_LEN,
};
use shoal_tracker_proto::{AnnounceRequest, AnnounceResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::TrackerError;
use crate::webrtc::{self, ConnId, DataChannel, Endpoint, PendingConn};

/// Offers made per announce unless the torrent asks for a number (WebTorrent makes 5-10).
pub const DEFAULT_OFFERS: u32 = 5;
/// The most offers one announce carries.
pub const MAX_OFFERS_PER_ANNOUNCE: u32 = 10;
/// How long an announce waits for the tracker's answer.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// Offers we remember per socket (they expire in the endpoint long before this fills).
const MAX_PENDING_OFFERS: usize = 1024;
/// Announces waiting for an answer per socket.
const MAX_PENDING_ANNOUNCES: usize = 256;
/// Answers we are working on at once per socket (each one a new WebRTC connection).
const MAX_CONCURRENT_ANSWERS: usize = 32;
/// A SDP longer than this is refused before str0m sees it.
const MAX_SDP_LEN: usize = 32 * 1024;

/// A peer that reached us over WebRTC: the open channel, its handshake already read.
pub struct WebRtcPeer {
    pub info_hash: InfoHash,
    pub channel: DataChannel,
    pub handshake: Handshake,
}

/// The WebSocket tracker clients of a session.
pub struct WsTrackers {
    endpoint: Endpoint,
    peer_id: PeerId,
    peers: mpsc::UnboundedSender<WebRtcPeer>,
    sockets: Mutex<HashMap<String, mpsc::UnboundedSender<ToSocket>>>,
}

enum ToSocket {
    Announce {
        announce: WsAnnounce,
        offers: Vec<([u8; 20], PendingConn)>,
        reply: oneshot::Sender<Result<AnnounceResponse, TrackerError>>,
    },
}

impl WsTrackers {
    /// Connections that open are sent to `peers`.
    pub fn new(
        endpoint: Endpoint,
        peer_id: PeerId,
        peers: mpsc::UnboundedSender<WebRtcPeer>,
    ) -> Self {
        WsTrackers { endpoint, peer_id, peers, sockets: Mutex::default() }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Announces `req` to the WebSocket tracker at `url`, with `offers` fresh offers.
    pub async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        offers: u32,
    ) -> Result<AnnounceResponse, TrackerError> {
        let socket = self.socket(url)?;
        let count = if req.event == AnnounceEvent::Stopped { 0 } else { offers };
        let mut made = Vec::new();
        for _ in 0..count.min(MAX_OFFERS_PER_ANNOUNCE) {
            match self.endpoint.create_offer().await {
                Ok(pending) => made.push((rand::random::<[u8; 20]>(), pending)),
                // At the connection limit: announce with what we have.
                Err(e) => {
                    tracing::debug!("no more offers: {e}");
                    break;
                }
            }
        }
        let mut announce = WsAnnounce::new(req.info_hash, req.peer_id);
        announce.event = req.event;
        announce.numwant = Some(made.len() as u32);
        announce.uploaded = req.uploaded;
        announce.downloaded = req.downloaded;
        announce.left = req.left;
        let (reply, rx) = oneshot::channel();
        socket
            .send(ToSocket::Announce { announce, offers: made, reply })
            .map_err(|_| TrackerError::Http("WebSocket tracker client stopped".into()))?;
        match tokio::time::timeout(ANNOUNCE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TrackerError::Http("WebSocket tracker connection lost".into())),
            Err(_) => Err(TrackerError::Timeout),
        }
    }

    fn socket(&self, url: &str) -> Result<mpsc::UnboundedSender<ToSocket>, TrackerError> {
        let target = WsUrl::parse(url)?;
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = sockets.get(url).filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = SocketTask {
            url: url.to_owned(),
            target,
            endpoint: self.endpoint.clone(),
            peer_id: self.peer_id,
            peers: self.peers.clone(),
            torrents: HashSet::new(),
            rejoin: HashMap::new(),
            offers: HashMap::new(),
            waiting: HashMap::new(),
            answering: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_ANSWERS)),
        };
        tokio::spawn(task.run(rx));
        sockets.insert(url.to_owned(), tx.clone());
        Ok(tx)
    }
}

/// Where a `ws://` or `wss://` URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WsUrl {
    tls: bool,
    host: String,
    port: u16,
}

impl WsUrl {
    fn parse(url: &str) -> Result<WsUrl, TrackerError> {
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

/// An offer of ours the tracker has forwarded; waiting for its answer.
struct OurOffer {
    conn: ConnId,
    info_hash: InfoHash,
    made: Instant,
}

struct SocketTask {
    url: String,
    target: WsUrl,
    endpoint: Endpoint,
    peer_id: PeerId,
    peers: mpsc::UnboundedSender<WebRtcPeer>,
    /// Torrents announced on this socket and not stopped: only their offers are answered.
    torrents: HashSet<InfoHash>,
    /// The last announce of each torrent in `torrents`, without offers: sent again after a
    /// reconnect, so the tracker keeps relaying other peers' offers to us.
    rejoin: HashMap<InfoHash, WsAnnounce>,
    offers: HashMap<[u8; 20], OurOffer>,
    /// Announces waiting for the tracker's answer, per torrent, oldest first.
    waiting: HashMap<InfoHash, VecDeque<oneshot::Sender<Result<AnnounceResponse, TrackerError>>>>,
    answering: Arc<tokio::sync::Semaphore>,
}

type Outgoing = mpsc::UnboundedSender<String>;

impl SocketTask {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<ToSocket>) {
        let mut backoff = BACKOFF_START;
        loop {
            // With torrents to keep in the swarm, reconnect at once; otherwise when there is
            // something to say.
            let first = if self.rejoin.is_empty() {
                match requests.recv().await {
                    Some(r) => Some(r),
                    None => return,
                }
            } else {
                None
            };
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.url, &self.target));
            let failure = match connected.await {
                Ok(Ok(ws)) => {
                    tracing::debug!(url = %self.url, "WebSocket tracker connected");
                    let since = Instant::now();
                    let reason = self.serve(ws, first, &mut requests).await;
                    // A tracker that accepts and then drops us at once still gets backoff.
                    if since.elapsed() >= STABLE_CONNECTION {
                        backoff = BACKOFF_START;
                    }
                    tracing::debug!(url = %self.url, "WebSocket tracker connection ended: {reason}");
                    self.fail_waiting(&reason);
                    if requests.is_closed() {
                        return;
                    }
                    reason
                }
                Ok(Err(e)) => {
                    if let Some(first) = first {
                        self.fail_request(first, &e);
                    }
                    e
                }
                Err(_) => {
                    if let Some(first) = first {
                        self.fail_request(first, "connect timed out");
                    }
                    "connect timed out".to_owned()
                }
            };
            self.back_off(&mut requests, &mut backoff, &failure).await;
        }
    }

    /// Fails everything that arrives during a backoff pause.
    async fn back_off(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<ToSocket>,
        backoff: &mut Duration,
        reason: &str,
    ) {
        tracing::debug!(url = %self.url, "WebSocket tracker unreachable ({reason}); retry in {backoff:?}");
        let until = tokio::time::Instant::now() + *backoff;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        while let Ok(Some(r)) = tokio::time::timeout_at(until, requests.recv()).await {
            self.fail_request(r, reason);
        }
    }

    fn fail_request(&mut self, request: ToSocket, reason: &str) {
        let ToSocket::Announce { offers, reply, .. } = request;
        for (_, pending) in offers {
            self.endpoint.close(pending.id);
        }
        let _ = reply.send(Err(TrackerError::Http(format!("WebSocket tracker: {reason}"))));
    }

    fn fail_waiting(&mut self, reason: &str) {
        for (_, queue) in self.waiting.drain() {
            for reply in queue {
                let _ = reply.send(Err(TrackerError::Http(format!("WebSocket tracker: {reason}"))));
            }
        }
    }

    async fn serve<S>(
        &mut self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        first: Option<ToSocket>,
        requests: &mut mpsc::UnboundedReceiver<ToSocket>,
    ) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        // Answers are made by spawned tasks; they hand their JSON back through this channel.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        for announce in self.rejoin.values() {
            let _ = out_tx.send(encode_request(&WsRequest::Announce(announce.clone())));
        }
        if let Some(first) = first {
            if let Err(e) = self.send_request(first, &out_tx) {
                return e;
            }
        }
        let mut purge = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(r) => {
                        if let Err(e) = self.send_request(r, &out_tx) {
                            return e;
                        }
                    }
                    None => {
                        let _ = sink.close().await;
                        return "client stopped".into();
                    }
                },
                Some(text) = out_rx.recv() => {
                    if let Err(e) = sink.send(WsMessage::text(text)).await {
                        return format!("send failed: {e}");
                    }
                }
                message = stream.next() => match message {
                    Some(Ok(WsMessage::Text(text))) => self.on_message(text.as_bytes(), &out_tx),
                    Some(Ok(WsMessage::Binary(_))) => {
                        tracing::debug!(url = %self.url, "binary frame from a WebSocket tracker; ignored");
                    }
                    Some(Ok(WsMessage::Close(_))) | None => return "closed by the tracker".into(),
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                    Some(Err(e)) => return format!("read failed: {e}"),
                },
                _ = purge.tick() => self.purge_offers(),
            }
        }
    }

    /// Registers an announce's offers and queues its JSON for the socket.
    fn send_request(&mut self, request: ToSocket, out: &Outgoing) -> Result<(), String> {
        let ToSocket::Announce { mut announce, offers, reply } = request;
        let info_hash = announce.info_hash;
        let queue = self.waiting.entry(info_hash).or_default();
        if queue.len() >= MAX_PENDING_ANNOUNCES {
            let _ = reply.send(Err(TrackerError::Http("too many announces in flight".into())));
            return Ok(());
        }
        if announce.event == AnnounceEvent::Stopped {
            self.torrents.remove(&info_hash);
            self.rejoin.remove(&info_hash);
            // Trackers do not always answer a stop: we do not wait for one.
            let _ = reply.send(Ok(AnnounceResponse::empty()));
        } else {
            self.torrents.insert(info_hash);
            queue.push_back(reply);
            let mut again = announce.clone();
            again.event = AnnounceEvent::None;
            again.numwant = Some(0);
            self.rejoin.insert(info_hash, again);
        }
        for (offer_id, pending) in offers {
            if self.offers.len() >= MAX_PENDING_OFFERS {
                self.endpoint.close(pending.id);
                continue;
            }
            announce.offers.push(WsOffer { offer_id, offer: description("offer", &pending.sdp) });
            self.offers
                .insert(offer_id, OurOffer { conn: pending.id, info_hash, made: Instant::now() });
            self.spawn_open(info_hash, pending.opened);
        }
        out.send(encode_request(&WsRequest::Announce(announce)))
            .map_err(|_| "socket writer gone".to_owned())
    }

    fn on_message(&mut self, text: &[u8], out: &Outgoing) {
        let message = match decode_response(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(url = %self.url, "bad message from WebSocket tracker: {e}");
                return;
            }
        };
        match message {
            WsResponse::Announce { info_hash, interval, complete, incomplete } => {
                let Some(reply) = self.waiting.get_mut(&info_hash).and_then(VecDeque::pop_front)
                else {
                    return;
                };
                let mut response = AnnounceResponse::empty();
                response.interval = clamp_interval(u64::from(interval));
                response.seeders = Some(complete);
                response.leechers = Some(incomplete);
                let _ = reply.send(Ok(response));
            }
            WsResponse::Failure { info_hash, reason, .. } => {
                // A failure names its torrent (bittorrent-tracker adds info_hash); without
                // one it answers the oldest announce of any torrent.
                let queue = match info_hash {
                    Some(h) => self.waiting.get_mut(&h),
                    None => self.waiting.values_mut().find(|q| !q.is_empty()),
                };
                if let Some(reply) = queue.and_then(VecDeque::pop_front) {
                    let _ = reply.send(Err(TrackerError::Failure(reason)));
                }
            }
            WsResponse::Offer { info_hash, peer_id, offer_id, offer } => {
                self.on_offer(info_hash, peer_id, offer_id, &offer, out);
            }
            WsResponse::Answer { info_hash, offer_id, answer, .. } => {
                let Some(ours) = self.offers.remove(&offer_id) else {
                    tracing::debug!(url = %self.url, "answer for an unknown offer; ignored");
                    return;
                };
                if ours.info_hash != info_hash {
                    self.endpoint.close(ours.conn);
                    return;
                }
                let Some(sdp) = parse_description(&answer, "answer") else {
                    self.endpoint.close(ours.conn);
                    return;
                };
                let endpoint = self.endpoint.clone();
                tokio::spawn(async move {
                    if let Err(e) = endpoint.accept_answer(ours.conn, sdp).await {
                        tracing::debug!("answer refused: {e}");
                    }
                });
            }
            WsResponse::Scrape { .. } => {}
        }
    }

    fn on_offer(
        &mut self,
        info_hash: InfoHash,
        from: PeerId,
        offer_id: [u8; 20],
        offer: &RawValue,
        out: &Outgoing,
    ) {
        if !self.torrents.contains(&info_hash) || from == self.peer_id {
            return;
        }
        let Some(sdp) = parse_description(offer, "offer") else {
            tracing::debug!(url = %self.url, "unusable offer; ignored");
            return;
        };
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            tracing::debug!(url = %self.url, "too many offers being answered; one dropped");
            return;
        };
        let endpoint = self.endpoint.clone();
        let our_id = self.peer_id;
        let out = out.clone();
        let peers = self.peers.clone();
        tokio::spawn(async move {
            let pending = match endpoint.accept_offer(sdp).await {
                Ok(p) => p,
                Err(e) => return tracing::debug!("offer refused: {e}"),
            };
            let answer = WsAnswer {
                info_hash,
                peer_id: our_id,
                to_peer_id: from,
                offer_id,
                answer: description("answer", &pending.sdp),
            };
            if out.send(encode_request(&WsRequest::Answer(answer))).is_err() {
                return endpoint.close(pending.id);
            }
            open_and_handshake(info_hash, our_id, pending.opened, peers).await;
            drop(permit);
        });
    }

    fn spawn_open(
        &self,
        info_hash: InfoHash,
        opened: oneshot::Receiver<Result<DataChannel, webrtc::WebRtcError>>,
    ) {
        let peers = self.peers.clone();
        let our_id = self.peer_id;
        tokio::spawn(open_and_handshake(info_hash, our_id, opened, peers));
    }

    /// Forgets offers the endpoint has given up on.
    fn purge_offers(&mut self) {
        let now = Instant::now();
        // The endpoint expires them itself; this only bounds our map.
        self.offers.retain(|_, o| now.duration_since(o.made) < Duration::from_secs(120));
    }
}

/// Waits for the channel, exchanges handshakes and hands the peer over.
async fn open_and_handshake(
    info_hash: InfoHash,
    our_id: PeerId,
    opened: oneshot::Receiver<Result<DataChannel, webrtc::WebRtcError>>,
    peers: mpsc::UnboundedSender<WebRtcPeer>,
) {
    let mut channel = match opened.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return tracing::debug!("WebRTC connection did not open: {e}"),
        Err(_) => return,
    };
    let ours = Handshake::new(info_hash, our_id);
    match webrtc::exchange_handshakes(&mut channel, &ours).await {
        Ok(theirs) if theirs.info_hash == info_hash => {
            let _ = peers.send(WebRtcPeer { info_hash, channel, handshake: theirs });
        }
        Ok(_) => tracing::debug!("WebRTC peer sent another torrent's handshake"),
        Err(e) => tracing::debug!("WebRTC handshake: {e}"),
    }
}

/// `{"type":"offer","sdp":"..."}`, as simple-peer signals it.
fn description(kind: &str, sdp: &str) -> Box<RawValue> {
    let json = serde_json::json!({ "type": kind, "sdp": sdp });
    // Serialising a JSON value built here cannot fail, nor can re-reading it.
    RawValue::from_string(json.to_string())
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("valid JSON"))
}

/// The SDP of a `{type, sdp}` object of the expected type, bounded in length.
fn parse_description(raw: &RawValue, kind: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Description {
        #[serde(rename = "type")]
        kind: String,
        sdp: String,
    }
    let d: Description = serde_json::from_str(raw.get()).ok()?;
    (d.kind == kind && !d.sdp.is_empty() && d.sdp.len() <= MAX_SDP_LEN).then_some(d.sdp)
}

// ---- connecting ----

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(
    url: &str,
    target: &WsUrl,
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
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, TlsOrPlain(transport), Some(config))
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
struct TlsOrPlain(Transport);

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

    #[test]
    fn descriptions_round_trip_and_are_checked() {
        let raw = description("offer", "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n");
        assert_eq!(parse_description(&raw, "offer").unwrap(), "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n");
        assert_eq!(parse_description(&raw, "answer"), None, "wrong type");
        let empty = RawValue::from_string(r#"{"type":"offer","sdp":""}"#.into()).unwrap();
        assert_eq!(parse_description(&empty, "offer"), None);
        let long = description("offer", &"a".repeat(MAX_SDP_LEN + 1));
        assert_eq!(parse_description(&long, "offer"), None);
        let odd = RawValue::from_string(r#"{"type":1,"sdp":[]}"#.into()).unwrap();
        assert_eq!(parse_description(&odd, "offer"), None);
    }
}
