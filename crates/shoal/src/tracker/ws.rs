//! The WebSocket tracker client: WebTorrent's signalling, so browser peers can reach us.
//!
//! One socket per tracker URL carries every torrent of the session. The signalling state
//! (which torrents are joined, our offers by id, announces waiting for answers, rejoins after
//! a reconnect, every check on what the tracker sends) is
//! [`WsClient`](shoal_tracker_proto::ws::WsClient), shared with the browser driver. This file
//! is its tokio driver: it owns the socket (`transport.rs`), the timers and the WebRTC
//! endpoint. An announce goes out with fresh WebRTC offers (full SDP, no trickle); answers
//! are applied to the offer's pending connection, offers from other peers are answered at
//! once. Every connection that opens exchanges BitTorrent handshakes over its data channel
//! and is handed to the session, which routes it to its torrent like an incoming TCP
//! connection.
//!
//! The socket reconnects with backoff ([`Reconnect`]); announces made while it is down wait
//! for it (up to the announce timeout), and with torrents joined it reconnects without waiting
//! for one and rejoins them with fresh offers. A socket quiet for a while is pinged, and one
//! that does not answer is taken as dead (`keepalive.rs`).

mod keepalive;
mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_proto::wire::Handshake;
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::ws::{
    offer_count, AnnounceError, AnnounceTicket, OfferDrop, OfferId, Reconnect, WsClient,
    WsClientConfig, WsEvent,
};
use shoal_tracker_proto::{AnnounceRequest, AnnounceResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub use shoal_tracker_proto::ws::{DEFAULT_OFFERS, MAX_OFFERS_PER_ANNOUNCE};

use self::keepalive::{Keepalive, Quiet, PONG_WAIT};
use self::transport::{connect, WsUrl};
use super::TrackerError;
use crate::clock::Clock;
use crate::webrtc::{self, ConnId, DataChannel, Endpoint, PendingConn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers we are working on at once per socket (each one a new WebRTC connection).
const MAX_CONCURRENT_ANSWERS: usize = 32;
/// Beyond the client's own announce timeout: only a socket task stuck in a write hits this.
const ANNOUNCE_GRACE: Duration = Duration::from_secs(5);
/// Offers one reconnect's rejoins carry at most, over all torrents. They are made only while
/// more than half of the endpoint's connections are free: a tracker that keeps dropping us
/// must not fill the endpoint with offers nobody answers (earlier connections' offers live
/// until they expire), leaving no room to answer peers.
const MAX_REJOIN_OFFERS: usize = 20;
/// A write the socket has not taken in this long ends the connection: on a route that drops
/// everything the kernel's buffer fills and a send would wait for TCP to give up (minutes),
/// with the keepalive unable to run meanwhile.
const SEND_STALL: Duration = keepalive::PONG_WAIT;

/// How many more connections the torrent with this info hash would take (0 for a torrent the
/// session does not have). Offers are answered only while there is room.
pub type ConnectionRoom = Arc<dyn Fn(&InfoHash) -> usize + Send + Sync>;

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
    room: ConnectionRoom,
    sockets: Mutex<HashMap<String, mpsc::UnboundedSender<ToSocket>>>,
}

type Reply = oneshot::Sender<Result<AnnounceResponse, TrackerError>>;

enum ToSocket {
    Announce { req: AnnounceRequest, offers: Vec<(OfferId, PendingConn)>, reply: Reply },
}

impl WsTrackers {
    /// Connections that open are sent to `peers`; `room` says whether a torrent takes more.
    pub fn new(
        endpoint: Endpoint,
        peer_id: PeerId,
        peers: mpsc::UnboundedSender<WebRtcPeer>,
        room: ConnectionRoom,
    ) -> Self {
        WsTrackers { endpoint, peer_id, peers, room, sockets: Mutex::default() }
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
        let mut made = Vec::new();
        for _ in 0..offer_count(req.event, offers) {
            match self.endpoint.create_offer().await {
                Ok(pending) => made.push((OfferId(rand::random()), pending)),
                // At the connection limit: announce with what we have.
                Err(e) => {
                    tracing::debug!("no more offers: {e}");
                    break;
                }
            }
        }
        let (reply, rx) = oneshot::channel();
        socket
            .send(ToSocket::Announce { req: req.clone(), offers: made, reply })
            .map_err(|_| TrackerError::Http("WebSocket tracker client stopped".into()))?;
        let patience = WsClientConfig::default().announce_timeout + ANNOUNCE_GRACE;
        match tokio::time::timeout(patience, rx).await {
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
        let config = WsClientConfig {
            // Our offers live as long as the endpoint keeps their connections.
            offer_timeout: self.endpoint.connect_timeout(),
            ..WsClientConfig::default()
        };
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let task = SocketTask {
            url: url.to_owned(),
            target,
            endpoint: self.endpoint.clone(),
            peers: self.peers.clone(),
            clock: Clock::new(),
            client: WsClient::new(self.peer_id, config),
            reconnect: Reconnect::new(),
            offers: HashMap::new(),
            replies: HashMap::new(),
            answering: Arc::new(Semaphore::new(MAX_CONCURRENT_ANSWERS)),
            room: self.room.clone(),
            answering_for: Arc::default(),
            answers_tx,
            answers_rx,
        };
        tokio::spawn(task.run(rx));
        sockets.insert(url.to_owned(), tx.clone());
        Ok(tx)
    }
}

/// An answer to a relayed offer, made by a spawned task, to be sent on the socket.
struct MadeAnswer {
    info_hash: InfoHash,
    to: PeerId,
    offer_id: OfferId,
    sdp: String,
    conn: ConnId,
}

/// What an open connection heard: a frame (or the keepalive's deadline passing without one),
/// or a new public address from STUN.
enum Heard<F> {
    Frame(Result<F, tokio::time::error::Elapsed>),
    PublicAddress,
}

/// What woke the socket task.
enum Wake<T> {
    /// An announce from the session; `None` when the session is gone.
    Request(Option<ToSocket>),
    Answer(MadeAnswer),
    Timer,
    /// Whatever else the current phase waits for (the connect attempt, a frame, the backoff).
    Other(T),
}

/// One tracker socket: drives its [`WsClient`] and carries out what it asks.
struct SocketTask {
    url: String,
    target: WsUrl,
    endpoint: Endpoint,
    peers: mpsc::UnboundedSender<WebRtcPeer>,
    clock: Clock,
    client: WsClient,
    reconnect: Reconnect,
    /// The pending connection of each offer the client holds, until answered or dropped.
    offers: HashMap<OfferId, ConnId>,
    /// Who waits for each announce the client has not finished.
    replies: HashMap<AnnounceTicket, Reply>,
    answering: Arc<Semaphore>,
    room: ConnectionRoom,
    /// Answers under way per torrent: they take room the torrent does not count yet.
    answering_for: Arc<Mutex<HashMap<InfoHash, usize>>>,
    answers_tx: mpsc::UnboundedSender<MadeAnswer>,
    answers_rx: mpsc::UnboundedReceiver<MadeAnswer>,
}

impl SocketTask {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<ToSocket>) {
        loop {
            // With torrents to keep in the swarm, (re)connect at once; otherwise when there
            // is something to say.
            while !self.client.wants_connection() {
                let wake = self.wake(&mut requests, std::future::pending::<()>()).await;
                if !self.handle(wake) {
                    return;
                }
            }
            let attempt = connect(self.url.clone(), self.target.clone());
            let mut connecting = Box::pin(tokio::time::timeout(CONNECT_TIMEOUT, attempt));
            let outcome = loop {
                match self.wake(&mut requests, &mut connecting).await {
                    Wake::Other(outcome) => break outcome,
                    wake => {
                        if !self.handle(wake) {
                            return;
                        }
                    }
                }
            };
            let reason = match outcome {
                Ok(Ok(ws)) => match self.serve(ws, &mut requests).await {
                    Some(reason) => reason,
                    None => return,
                },
                Ok(Err(e)) => e,
                Err(_) => "connect timed out".to_owned(),
            };
            let now = self.clock.now();
            self.client.disconnected(now, &reason);
            self.drain_events();
            let pause = self.reconnect.failed(now);
            tracing::debug!(url = %self.url, "WebSocket tracker: {reason}; retry in {pause:?}");
            let until = tokio::time::Instant::now() + pause;
            loop {
                match self.wake(&mut requests, tokio::time::sleep_until(until)).await {
                    Wake::Other(()) => break,
                    wake => {
                        if !self.handle(wake) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Runs one connection; why it ended, or `None` when the session is gone.
    async fn serve<S>(
        &mut self,
        ws: tokio_tungstenite::WebSocketStream<S>,
        requests: &mut mpsc::UnboundedReceiver<ToSocket>,
    ) -> Option<String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tracing::debug!(url = %self.url, "WebSocket tracker connected");
        let (mut sink, mut stream) = ws.split();
        // Fresh offers go with the rejoins, as with any announce: peers that announced while
        // we were away reach us now, not at our next announce.
        let offers = self.rejoin_offers().await;
        let sdps = offers
            .iter()
            .map(|(info_hash, made)| {
                (*info_hash, made.iter().map(|(id, p)| (*id, p.sdp.clone())).collect())
            })
            .collect();
        let now = self.clock.now();
        self.reconnect.connected(now);
        let refused = self.client.connected_with_offers(now, sdps);
        for (info_hash, made) in offers {
            self.keep_offers(info_hash, made, &refused);
        }
        self.drain_events();
        let mut keepalive = Keepalive::new(tokio::time::Instant::now());
        // A new public IP means this connection's packets now leave from an address the
        // tracker does not know: it is as good as dead, and the rejoin on a new one carries
        // offers with the new address.
        let mut public = self.endpoint.stun_address_changes();
        let mut public_ip = public.borrow_and_update().map(|a| a.ip());
        loop {
            while let Some(text) = self.client.poll_transmit() {
                if let Err(e) = send_bounded(&mut sink, WsMessage::text(text)).await {
                    return Some(e);
                }
            }
            let next = tokio::time::timeout_at(keepalive.deadline(), stream.next());
            let heard = async {
                tokio::select! {
                    frame = next => Heard::Frame(frame),
                    Ok(()) = public.changed() => Heard::PublicAddress,
                }
            };
            match self.wake(requests, heard).await {
                Wake::Other(Heard::PublicAddress) => {
                    let now_ip = public.borrow_and_update().map(|a| a.ip());
                    if public_ip.is_some() && now_ip != public_ip {
                        return Some("our public address changed".into());
                    }
                    public_ip = now_ip;
                }
                Wake::Other(Heard::Frame(Err(_quiet))) => {
                    match keepalive.on_deadline(tokio::time::Instant::now()) {
                        Quiet::SendPing => {
                            let ping = WsMessage::Ping(Default::default());
                            if let Err(e) = send_bounded(&mut sink, ping).await {
                                return Some(e);
                            }
                        }
                        Quiet::Dead => {
                            return Some(format!("no answer to a ping within {PONG_WAIT:?}"))
                        }
                    }
                }
                Wake::Other(Heard::Frame(Ok(message))) => {
                    if matches!(message, Some(Ok(_))) {
                        keepalive.heard(tokio::time::Instant::now());
                    }
                    match message {
                        Some(Ok(WsMessage::Text(text))) => {
                            self.client.handle_text(self.clock.now(), text.as_str());
                            self.drain_events();
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            tracing::debug!(url = %self.url, "binary frame from a WebSocket tracker; ignored");
                        }
                        Some(Ok(WsMessage::Close(_))) | None => {
                            return Some("closed by the tracker".into())
                        }
                        // ping/pong: tungstenite answers pings itself; a pong answers ours
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Some(format!("read failed: {e}")),
                    }
                }
                Wake::Request(None) => {
                    // Send what the last requests queued (a stop, say) before closing.
                    while let Some(text) = self.client.poll_transmit() {
                        let _ = send_bounded(&mut sink, WsMessage::text(text)).await;
                    }
                    let _ = tokio::time::timeout(SEND_STALL, sink.close()).await;
                    return None;
                }
                wake => {
                    self.handle(wake);
                }
            }
        }
    }

    /// Waits for an announce, a made answer, the client's timer, or `other`.
    async fn wake<F: Future>(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<ToSocket>,
        other: F,
    ) -> Wake<F::Output> {
        let deadline = self.client.poll_timeout().map(|at| self.clock.tokio_instant(at));
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => Wake::Request(request),
            Some(answer) = self.answers_rx.recv() => Wake::Answer(answer),
            () = timer => Wake::Timer,
            out = other => Wake::Other(out),
        }
    }

    /// Feeds one wake-up to the client and acts on what it says; false when the session is
    /// gone.
    fn handle<T>(&mut self, wake: Wake<T>) -> bool {
        match wake {
            Wake::Request(Some(request)) => self.announce(request),
            Wake::Request(None) => return false,
            Wake::Answer(answer) => {
                let MadeAnswer { info_hash, to, offer_id, sdp, conn } = answer;
                if let Err(e) = self.client.send_answer(info_hash, to, offer_id, &sdp) {
                    tracing::debug!(url = %self.url, "answer not sent: {e}");
                    self.endpoint.close(conn);
                }
            }
            Wake::Timer => self.client.handle_timeout(self.clock.now()),
            Wake::Other(_) => {}
        }
        self.drain_events();
        true
    }

    fn announce(&mut self, request: ToSocket) {
        let ToSocket::Announce { req, offers, reply } = request;
        let sdps = offers.iter().map(|(id, pending)| (*id, pending.sdp.clone())).collect();
        let announced = self.client.announce(self.clock.now(), &req, sdps);
        self.replies.insert(announced.ticket, reply);
        self.keep_offers(req.info_hash, offers, &announced.refused);
    }

    /// Our offers for `info_hash` that the client took: kept until answered or dropped, each
    /// waiting for its channel. Those in `refused` are closed.
    fn keep_offers(
        &mut self,
        info_hash: InfoHash,
        offers: Vec<(OfferId, PendingConn)>,
        refused: &[(OfferId, OfferDrop)],
    ) {
        for (id, pending) in offers {
            if refused.iter().any(|(refused, _)| *refused == id) {
                self.endpoint.close(pending.id);
                continue;
            }
            self.offers.insert(id, pending.id);
            let peers = self.peers.clone();
            let our_id = self.client.peer_id();
            tokio::spawn(open_and_handshake(info_hash, our_id, pending.opened, peers));
        }
    }

    /// Fresh offers for each torrent a reconnect rejoins, as many as an announce makes by
    /// default, within the room the client has for offers and the torrent for connections,
    /// and within [`MAX_REJOIN_OFFERS`] and the free half of the endpoint.
    async fn rejoin_offers(&self) -> Vec<(InfoHash, Vec<(OfferId, PendingConn)>)> {
        let endpoint_spare = {
            let (max, live) = (self.endpoint.max_connections(), self.endpoint.live_connections());
            max.saturating_sub(live).saturating_sub(max / 2)
        };
        let mut room = self.client.pending_offer_room().min(MAX_REJOIN_OFFERS).min(endpoint_spare);
        let mut all = Vec::new();
        for info_hash in self.client.rejoining() {
            let wanted = (DEFAULT_OFFERS as usize).min((self.room)(&info_hash)).min(room);
            let mut made = Vec::new();
            for _ in 0..wanted {
                match self.endpoint.create_offer().await {
                    Ok(pending) => made.push((OfferId(rand::random()), pending)),
                    // At the endpoint's connection limit: rejoin with what we have.
                    Err(e) => {
                        tracing::debug!("no more offers: {e}");
                        break;
                    }
                }
            }
            room -= made.len();
            all.push((info_hash, made));
        }
        all
    }

    /// Carries out everything the client asked for.
    fn drain_events(&mut self) {
        while let Some(event) = self.client.poll_event() {
            match event {
                WsEvent::AnnounceDone { ticket, result, .. } => {
                    if let Some(reply) = self.replies.remove(&ticket) {
                        let _ = reply.send(result.map_err(tracker_error));
                    }
                }
                WsEvent::Answer { offer_id, sdp, .. } => {
                    let Some(conn) = self.offers.remove(&offer_id) else { continue };
                    let endpoint = self.endpoint.clone();
                    tokio::spawn(async move {
                        if let Err(e) = endpoint.accept_answer(conn, sdp).await {
                            tracing::debug!("answer refused: {e}");
                            endpoint.close(conn);
                        }
                    });
                }
                WsEvent::OfferDropped { offer_id, reason } => {
                    if let Some(conn) = self.offers.remove(&offer_id) {
                        tracing::trace!(url = %self.url, "offer dropped: {reason}");
                        self.endpoint.close(conn);
                    }
                }
                WsEvent::Offer { info_hash, peer_id, offer_id, sdp } => {
                    self.answer_offer(info_hash, peer_id, offer_id, sdp);
                }
                WsEvent::Ignored(why) => {
                    tracing::debug!(url = %self.url, "from the WebSocket tracker: {why}; ignored");
                }
            }
        }
    }

    /// Makes an answer in a task of its own; it comes back as [`Wake::Answer`].
    fn answer_offer(&mut self, info_hash: InfoHash, from: PeerId, offer_id: OfferId, sdp: String) {
        let Some(claim) = RoomClaim::take(&self.answering_for, info_hash, (self.room)(&info_hash))
        else {
            tracing::debug!(url = %self.url, "an offer for a torrent with no room; dropped");
            return;
        };
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            tracing::debug!(url = %self.url, "too many offers being answered; one dropped");
            return;
        };
        let endpoint = self.endpoint.clone();
        let our_id = self.client.peer_id();
        let answers = self.answers_tx.clone();
        let peers = self.peers.clone();
        tokio::spawn(async move {
            let pending = match endpoint.accept_offer(sdp).await {
                Ok(p) => p,
                Err(e) => return tracing::debug!("offer refused: {e}"),
            };
            let made =
                MadeAnswer { info_hash, to: from, offer_id, sdp: pending.sdp, conn: pending.id };
            if answers.send(made).is_err() {
                return endpoint.close(pending.id);
            }
            open_and_handshake(info_hash, our_id, pending.opened, peers).await;
            drop((permit, claim));
        });
    }
}

/// One answer's share of a torrent's room, given back when the answer's task ends.
struct RoomClaim {
    claims: Arc<Mutex<HashMap<InfoHash, usize>>>,
    info_hash: InfoHash,
}

impl RoomClaim {
    /// Claims a connection if the torrent's `room` is more than the answers already under way.
    fn take(
        claims: &Arc<Mutex<HashMap<InfoHash, usize>>>,
        info_hash: InfoHash,
        room: usize,
    ) -> Option<RoomClaim> {
        let mut map = claims.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&info_hash).copied().unwrap_or(0) >= room {
            return None;
        }
        *map.entry(info_hash).or_insert(0) += 1;
        Some(RoomClaim { claims: claims.clone(), info_hash })
    }
}

impl Drop for RoomClaim {
    fn drop(&mut self) {
        let mut map = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.info_hash) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.info_hash);
            }
        }
    }
}

fn tracker_error(e: AnnounceError) -> TrackerError {
    match e {
        AnnounceError::Failure(reason) => TrackerError::Failure(reason),
        AnnounceError::Timeout => TrackerError::Timeout,
        other => TrackerError::Http(format!("WebSocket tracker: {other}")),
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

/// Sends `message`, waiting at most [`SEND_STALL`] for the socket to take it; the error says
/// why the connection ends.
async fn send_bounded<S>(sink: &mut S, message: WsMessage) -> Result<(), String>
where
    S: futures_util::Sink<WsMessage> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(SEND_STALL, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!("a send waited more than {SEND_STALL:?}")),
    }
}
