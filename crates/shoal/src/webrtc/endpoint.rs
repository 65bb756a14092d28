//! One UDP socket carrying every WebRTC connection of a session.
//!
//! A single task owns the socket and all str0m [`Rtc`] instances. Incoming datagrams are
//! matched to their connection by source address (cached) or, for a new address, by asking
//! each `Rtc` whether it [`accepts`](Rtc::accepts) the packet: ICE checks carry the ufrag of
//! the connection they belong to. After a mutation of an `Rtc` its output is drained to the
//! next timeout, as str0m requires; only the touched connections are polled, plus those whose
//! timer fired. Datagrams that arrive together are all handed in before that poll, because
//! each poll costs sctp-proto a walk of everything in flight.
//!
//! Connections start either from an offer we make ([`Endpoint::create_offer`], answered
//! through a tracker with [`Endpoint::accept_answer`]) or from a remote offer
//! ([`Endpoint::accept_offer`]). Either way the caller gets a receiver that yields the
//! [`DataChannel`] once it is open, or an error when the connection fails or does not open
//! within the configured time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::channel::{ChannelShared, DataChannel, HIGH_WATER, LOW_WATER, MAX_INBOUND};
use super::pacer::Pacer;
use super::probe::TailProbe;
use super::stun::{StunAnswer, StunRefresh};
use super::{server_reflexive, WebRtcConfig, WebRtcError};

/// Identifies one connection of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// The largest data-channel message we send. Every WebRTC stack takes 16 KiB; larger ones are
/// refused or fragmented badly by some.
const MAX_MESSAGE: usize = 16 * 1024;
/// str0m's SCTP send buffer: big enough to keep a fast path busy between acknowledgements.
const SCTP_SEND_BUFFER: usize = 2 * 1024 * 1024;
/// A closing connection gets this long to deliver what it still has queued.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Largest UDP datagram we read (WebRTC keeps packets under the path MTU).
const RECV_BUFFER: usize = 2048;
/// Commands handled between two looks at the socket, so a busy writer cannot starve input.
const COMMAND_BATCH: usize = 64;
/// Datagrams read from the socket before the connections they touched are polled.
const RECV_BATCH: usize = 64;
/// Datagrams one connection takes before it must be polled: its DTLS layer queues what it
/// has not handed on, and refuses more than 30 (dimpl's `max_queue_rx`).
const MAX_UNPOLLED: u32 = 16;
/// The datagram size for a peer on this host: the loopback path takes 64 KiB, so the largest
/// str0m allows. Each datagram costs both sides per-packet work (sctp-proto's walks of its
/// in-flight queue on ours, DTLS and dcSCTP on a browser's); a quarter fewer of them than at
/// the cross-network default cut our seeder's CPU (docs/BENCHMARKS.md, session 13). Browsers
/// that hide their addresses behind mDNS names are not recognised as local and keep the
/// default.
const SAME_HOST_MTU: usize = str0m::DATAGRAM_MTU_TARGET_MAX;

/// Candidates we read from one SDP.
const MAX_SDP_CANDIDATES: usize = 32;

/// What the caller of `create_offer` / `accept_offer` receives.
pub struct PendingConn {
    pub id: ConnId,
    /// Our SDP: the offer, or the answer to the remote offer.
    pub sdp: String,
    /// Yields the open channel, or why the connection failed.
    pub opened: oneshot::Receiver<Result<DataChannel, WebRtcError>>,
}

pub(crate) enum Cmd {
    CreateOffer {
        reply: oneshot::Sender<Result<PendingConn, WebRtcError>>,
    },
    AcceptOffer {
        sdp: String,
        reply: oneshot::Sender<Result<PendingConn, WebRtcError>>,
    },
    AcceptAnswer {
        id: ConnId,
        sdp: String,
        reply: oneshot::Sender<Result<(), WebRtcError>>,
    },
    Write {
        id: ConnId,
        data: Bytes,
    },
    /// `flush`: deliver what is queued first (bounded by [`CLOSE_GRACE`]).
    Close {
        id: ConnId,
        flush: bool,
    },
}

/// A handle to the endpoint task; cheap to clone. The task ends when every handle and every
/// channel is gone.
#[derive(Clone)]
pub struct Endpoint {
    commands: mpsc::UnboundedSender<Cmd>,
    local: SocketAddr,
    /// What the STUN server last said, kept current by the task.
    stun_address: watch::Receiver<Option<SocketAddr>>,
    live: Arc<AtomicUsize>,
    max_connections: usize,
    connect_timeout: Duration,
}

impl Endpoint {
    /// Binds the socket and starts the task. `candidates` are the addresses we advertise: the
    /// socket's own (host) and, if a STUN server told us, our public one (server reflexive).
    /// `stun` asks that server again from now on, with what its first answer said, if any.
    pub(super) fn start(
        socket: UdpSocket,
        candidates: Vec<Candidate>,
        stun: Option<StunRefresh>,
        config: &WebRtcConfig,
    ) -> Result<Endpoint, WebRtcError> {
        let local = socket.local_addr().map_err(WebRtcError::Socket)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicUsize::new(0));
        let (stun_tx, stun_address) = watch::channel(stun.as_ref().and_then(StunRefresh::public));
        let task = EndpointTask {
            socket,
            local,
            candidates,
            stun,
            stun_address: stun_tx,
            commands: commands.downgrade(),
            conns: HashMap::new(),
            by_remote: HashMap::new(),
            next_id: 0,
            max_connections: config.max_connections,
            connect_timeout: config.connect_timeout,
            mtu: config.mtu,
            full_size_on_this_host: config.full_size_on_this_host,
            live: live.clone(),
            send_drops: 0,
            unpolled: Vec::new(),
        };
        tokio::spawn(task.run(rx));
        Ok(Endpoint {
            commands,
            local,
            stun_address,
            live,
            max_connections: config.max_connections,
            connect_timeout: config.connect_timeout,
        })
    }

    /// Our address as the STUN server last reported it (`WebRtcConfig::stun`), whether or not
    /// it became a server-reflexive candidate (it does when it differs from
    /// [`local_addr`](Self::local_addr) and str0m takes it). `None` without a server, or
    /// until it answers.
    pub fn stun_address(&self) -> Option<SocketAddr> {
        *self.stun_address.borrow()
    }

    /// [`stun_address`](Self::stun_address) as it changes: tracker sockets reconnect when our
    /// public address moves, since their TCP connections went with the old one.
    pub fn stun_address_changes(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.stun_address.clone()
    }

    /// The UDP address connections run on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How long a connection may take to open before it is dropped (an unanswered offer, say).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connections that exist now (pending, open or closing). Tests use it to see that
    /// failed attempts leave nothing behind.
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The most connections the endpoint holds at once (`WebRtcConfig::max_connections`).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Makes an offer (full SDP with our candidates, no trickle) with one data channel.
    pub async fn create_offer(&self) -> Result<PendingConn, WebRtcError> {
        let (reply, rx) = oneshot::channel();
        self.request(Cmd::CreateOffer { reply }, rx).await?
    }

    /// Answers a remote offer; the remote opens the channel.
    pub async fn accept_offer(&self, sdp: String) -> Result<PendingConn, WebRtcError> {
        let (reply, rx) = oneshot::channel();
        self.request(Cmd::AcceptOffer { sdp, reply }, rx).await?
    }

    /// Applies the remote answer to our offer `id`.
    pub async fn accept_answer(&self, id: ConnId, sdp: String) -> Result<(), WebRtcError> {
        let (reply, rx) = oneshot::channel();
        self.request(Cmd::AcceptAnswer { id, sdp, reply }, rx).await?
    }

    /// Drops connection `id` (an offer nobody answered, say).
    pub fn close(&self, id: ConnId) {
        let _ = self.commands.send(Cmd::Close { id, flush: false });
    }

    async fn request<T>(&self, cmd: Cmd, rx: oneshot::Receiver<T>) -> Result<T, WebRtcError> {
        self.commands.send(cmd).map_err(|_| WebRtcError::Stopped)?;
        rx.await.map_err(|_| WebRtcError::Stopped)
    }
}

enum ConnState {
    /// Our offer is out; waiting for the answer.
    Offered(SdpPendingOffer),
    /// Negotiated; ICE, DTLS, SCTP and the channel are coming up.
    Connecting,
    Open,
    /// Delivering what is queued, then gone (by `deadline` at the latest).
    Closing {
        deadline: Instant,
    },
}

struct Conn {
    rtc: Rtc,
    state: ConnState,
    /// When str0m wants `handle_input(Timeout)` next.
    wake_at: Instant,
    /// Until open: give up at this time.
    give_up_at: Instant,
    channel: Option<ChannelId>,
    opened: Option<oneshot::Sender<Result<DataChannel, WebRtcError>>>,
    shared: Arc<ChannelShared>,
    incoming: Option<mpsc::UnboundedSender<Bytes>>,
    outq: VecDeque<Bytes>,
    outq_bytes: usize,
    remote: Option<SocketAddr>,
    /// Datagrams handed to `rtc` since it was last polled (see [`MAX_UNPOLLED`]).
    unpolled: u32,
    /// The addresses the remote's SDP offered (see [`EndpointTask::collides`]).
    remote_candidates: Vec<SocketAddr>,
    /// Its offer said it is on this host, so its datagrams are [`SAME_HOST_MTU`] bytes.
    same_host: bool,
    /// Outgoing datagrams beyond the burst the remote can take at once.
    pacer: Pacer,
    /// The tail of the last flight, sent again if the connection goes quiet with data
    /// unacknowledged.
    probe: TailProbe,
    /// For the debug line at the end of the connection.
    counters: ConnCounters,
}

/// What one connection cost, logged when it goes: how often its `Rtc` was driven and polled
/// (each poll may walk sctp-proto's in-flight queue) against what it carried.
#[derive(Debug, Default)]
struct ConnCounters {
    /// Data-channel messages and their bytes handed to str0m.
    messages_sent: u64,
    bytes_sent: u64,
    datagrams_in: u64,
    /// The largest datagram str0m gave us to send (its MTU for this connection, once full
    /// packets flow).
    largest_datagram: usize,
    drives: u64,
    polls: u64,
}

impl Conn {
    /// When the tail-loss probe wants to look at this connection: only once data flows.
    fn probe_due(&self) -> Option<Instant> {
        match self.state {
            ConnState::Open | ConnState::Closing { .. } => self.probe.due(),
            _ => None,
        }
    }
}

struct EndpointTask {
    socket: UdpSocket,
    local: SocketAddr,
    /// What new connections advertise: host, and server reflexive once STUN found it.
    candidates: Vec<Candidate>,
    /// The periodic binding request, with `--stun`.
    stun: Option<StunRefresh>,
    stun_address: watch::Sender<Option<SocketAddr>>,
    /// For channels' command senders; weak so that the task ends when the last user is gone.
    commands: mpsc::WeakUnboundedSender<Cmd>,
    conns: HashMap<ConnId, Conn>,
    by_remote: HashMap<SocketAddr, ConnId>,
    next_id: u64,
    max_connections: usize,
    connect_timeout: Duration,
    /// Largest datagram a connection sends (checked against str0m's bounds in `start`).
    mtu: usize,
    /// Whether answers to peers on this host use [`SAME_HOST_MTU`]; turned off for good once
    /// a peer that claimed to be here sends from elsewhere.
    full_size_on_this_host: bool,
    live: Arc<AtomicUsize>,
    send_drops: u64,
    /// Connections that took datagrams in this receive batch and wait for their poll.
    unpolled: Vec<ConnId>,
}

impl EndpointTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, source)) => {
                        self.on_datagram(&buf[..n], source);
                        // Whatever else is waiting goes in before anyone is polled: every
                        // poll walks sctp-proto's whole in-flight queue, so one poll per
                        // batch of acknowledgements instead of one per packet.
                        for _ in 1..RECV_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, source)) => self.on_datagram(&buf[..n], source),
                                Err(_) => break,
                            }
                        }
                        self.drive_unpolled();
                    }
                    Err(e) => {
                        // ICMP port unreachable and friends surface here; not fatal.
                        tracing::trace!("webrtc socket: {e}");
                    }
                },
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.on_command(cmd);
                    for _ in 1..COMMAND_BATCH {
                        match commands.try_recv() {
                            Ok(cmd) => self.on_command(cmd),
                            Err(_) => break,
                        }
                    }
                    self.drive_unpolled();
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    self.on_timers(Instant::now());
                }
            }
        }
        for (_, conn) in self.conns.drain() {
            conn.shared.close();
        }
        self.live.store(0, Ordering::Relaxed);
        if self.send_drops > 0 {
            tracing::debug!(drops = self.send_drops, "webrtc endpoint stopped");
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.conns
            .values()
            .map(|c| {
                let wake = match c.state {
                    ConnState::Open => c.wake_at,
                    ConnState::Closing { deadline } => c.wake_at.min(deadline),
                    _ => c.wake_at.min(c.give_up_at),
                };
                let wake = c.pacer.next_release().map_or(wake, |at| wake.min(at));
                c.probe_due().map_or(wake, |at| wake.min(at))
            })
            .chain(self.stun.as_ref().map(StunRefresh::due))
            .min()
            .unwrap_or(far)
    }

    // ---- commands ----

    fn on_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::CreateOffer { reply } => {
                let _ = reply.send(self.create_offer());
            }
            Cmd::AcceptOffer { sdp, reply } => {
                let _ = reply.send(self.accept_offer(&sdp));
            }
            Cmd::AcceptAnswer { id, sdp, reply } => {
                let _ = reply.send(self.accept_answer(id, &sdp));
            }
            Cmd::Write { id, data } => {
                let Some(conn) = self.conns.get_mut(&id) else { return };
                let mut data = data;
                while !data.is_empty() {
                    let chunk = data.split_to(data.len().min(MAX_MESSAGE));
                    conn.outq_bytes += chunk.len();
                    conn.outq.push_back(chunk);
                }
                // Polled once after the whole command batch (see `run`): a poll walks
                // sctp-proto's in-flight queue, and writes come in runs of several.
                self.mark_unpolled(id);
            }
            Cmd::Close { id, flush } => {
                let Some(conn) = self.conns.get_mut(&id) else { return };
                if flush && matches!(conn.state, ConnState::Open) {
                    conn.state = ConnState::Closing { deadline: Instant::now() + CLOSE_GRACE };
                    self.drive(id, None);
                } else {
                    self.remove(id, "closed by us");
                }
            }
        }
    }

    /// A connection's `Rtc`, its datagrams at most `mtu` bytes (str0m fixes that for the
    /// connection's life).
    fn new_rtc(&self, mtu: usize) -> Rtc {
        let mut rtc = Rtc::builder()
            .set_sctp_max_buffered_amount(SCTP_SEND_BUFFER)
            // Warn only about datagrams above both the target and str0m's usual threshold.
            .set_mtu(mtu..=mtu.max(str0m::DATAGRAM_MTU_WARN))
            .build(Instant::now());
        for candidate in &self.candidates {
            // Only fails for duplicates, which we never add.
            let _ = rtc.add_local_candidate(candidate.clone());
        }
        rtc
    }

    fn admit(&self) -> Result<ConnId, WebRtcError> {
        if self.conns.len() >= self.max_connections {
            return Err(WebRtcError::TooManyConnections(self.max_connections));
        }
        Ok(ConnId(self.next_id))
    }

    fn insert(&mut self, id: ConnId, rtc: Rtc, state: ConnState) -> PendingConnParts {
        self.next_id += 1;
        let (tx, opened) = oneshot::channel();
        let now = Instant::now();
        self.conns.insert(
            id,
            Conn {
                rtc,
                state,
                wake_at: now,
                give_up_at: now + self.connect_timeout,
                channel: None,
                opened: Some(tx),
                shared: Arc::default(),
                incoming: None,
                outq: VecDeque::new(),
                outq_bytes: 0,
                remote: None,
                unpolled: 0,
                remote_candidates: Vec::new(),
                same_host: false,
                pacer: Pacer::new(Instant::now()),
                probe: TailProbe::new(),
                counters: ConnCounters::default(),
            },
        );
        self.live.store(self.conns.len(), Ordering::Relaxed);
        PendingConnParts { opened }
    }

    fn create_offer(&mut self) -> Result<PendingConn, WebRtcError> {
        let id = self.admit()?;
        // Whoever answers is not known yet, so the path could be any: the configured size.
        let mut rtc = self.new_rtc(self.mtu);
        let mut api = rtc.sdp_api();
        // WebTorrent's peers (simple-peer) open one ordered, reliable channel; the label is
        // not checked by anyone, so any short name works.
        let channel = api.add_channel_with_config(ChannelConfig {
            label: "shoal".into(),
            ..ChannelConfig::default()
        });
        let Some((offer, pending)) = api.apply() else {
            return Err(WebRtcError::Sdp("str0m made no offer".into()));
        };
        let sdp = offer.to_sdp_string();
        let parts = self.insert(id, rtc, ConnState::Offered(pending));
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.channel = Some(channel);
        }
        self.drive(id, None);
        Ok(PendingConn { id, sdp, opened: parts.opened })
    }

    fn accept_offer(&mut self, sdp: &str) -> Result<PendingConn, WebRtcError> {
        let id = self.admit()?;
        let candidates = sdp_candidates(sdp);
        if self.collides(&candidates, None) {
            return Err(WebRtcError::AlreadyConnected);
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let same_host = self.full_size_on_this_host && on_this_host(sdp, self.local);
        let mtu = if same_host { self.mtu.max(SAME_HOST_MTU) } else { self.mtu };
        let mut rtc = self.new_rtc(mtu);
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let sdp = answer.to_sdp_string();
        let parts = self.insert(id, rtc, ConnState::Connecting);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.remote_candidates = candidates;
            conn.same_host = same_host;
        }
        self.drive(id, None);
        Ok(PendingConn { id, sdp, opened: parts.opened })
    }

    /// Whether another connection already talks to one of `candidates`. DTLS and SCTP
    /// packets carry nothing that names their connection, so two connections between the
    /// same pair of sockets (two of our own endpoints, say) cannot be told apart: the second
    /// is refused. Browsers open one socket per connection and never collide.
    fn collides(&self, candidates: &[SocketAddr], except: Option<ConnId>) -> bool {
        self.conns.iter().filter(|(id, _)| Some(**id) != except).any(|(_, c)| {
            candidates.iter().any(|a| c.remote == Some(*a) || c.remote_candidates.contains(a))
        })
    }

    fn accept_answer(&mut self, id: ConnId, sdp: &str) -> Result<(), WebRtcError> {
        if !matches!(self.conns.get(&id).map(|c| &c.state), Some(ConnState::Offered(_))) {
            return match self.conns.contains_key(&id) {
                true => Err(WebRtcError::Sdp("this offer was already answered".into())),
                false => Err(WebRtcError::UnknownConnection),
            };
        }
        let candidates = sdp_candidates(sdp);
        if self.collides(&candidates, Some(id)) {
            self.remove(id, "already connected to that endpoint");
            return Err(WebRtcError::AlreadyConnected);
        }
        let conn = self.conns.get_mut(&id).ok_or(WebRtcError::UnknownConnection)?;
        conn.remote_candidates = candidates;
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                // A bad answer ends the attempt: the offer cannot be answered twice.
                self.remove(id, "bad answer");
                return Err(WebRtcError::Sdp(e.to_string()));
            }
        };
        let ConnState::Offered(pending) = std::mem::replace(&mut conn.state, ConnState::Connecting)
        else {
            return Err(WebRtcError::UnknownConnection);
        };
        if let Err(e) = conn.rtc.sdp_api().accept_answer(pending, answer) {
            self.remove(id, "answer refused");
            return Err(WebRtcError::Sdp(e.to_string()));
        }
        self.drive(id, None);
        Ok(())
    }

    // ---- network ----

    /// STUN says our public address is now `new`: connections made from now on advertise it.
    /// Those already made keep what they had (ICE restarts are not supported), and a peer
    /// that has our old address in an offer tries it and fails, like any stale offer.
    fn on_public_address(&mut self, old: Option<SocketAddr>, new: SocketAddr) {
        match old {
            Some(old) => tracing::info!(%old, %new, "STUN: our public address changed"),
            None => tracing::info!(%new, "STUN: our public address"),
        }
        self.candidates.retain(|c| c.kind() != CandidateKind::ServerReflexive);
        self.candidates.extend(server_reflexive(new, self.local));
        self.stun_address.send_replace(Some(new));
    }

    fn on_datagram(&mut self, data: &[u8], source: SocketAddr) {
        if let Some(stun) = self.stun.as_mut().filter(|s| s.server() == source) {
            match stun.on_datagram(data) {
                StunAnswer::NotOurs => {}
                StunAnswer::Unchanged => return,
                StunAnswer::Changed { old, new } => return self.on_public_address(old, new),
            }
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) else {
            return; // not STUN, DTLS or SRTP: noise
        };
        let input = Input::Receive(Instant::now(), receive);
        let cached = self.by_remote.get(&source).copied();
        let id = match cached.filter(|id| self.conns.get(id).is_some_and(|c| c.rtc.accepts(&input)))
        {
            Some(id) => id,
            None => {
                let Some(id) =
                    self.conns.iter().find(|(_, c)| c.rtc.accepts(&input)).map(|(id, _)| *id)
                else {
                    return;
                };
                if self.conns.get(&id).is_some_and(|c| c.same_host)
                    && !is_this_host(source.ip(), self.local)
                {
                    // Its offer named only this host's addresses, yet its packets come from
                    // elsewhere (another host reusing our private address, through a NAT):
                    // full-size datagrams could be lost on that path. Trust such claims no more.
                    tracing::warn!(%source, "a peer that claimed to be on this host is not");
                    self.full_size_on_this_host = false;
                    self.remove(id, "not on this host after all");
                    return;
                }
                self.by_remote.insert(source, id);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.remote.get_or_insert(source);
                }
                id
            }
        };
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.pacer.on_remote_packet();
        conn.counters.datagrams_in += 1;
        conn.probe.on_heard(Instant::now());
        if let Err(e) = conn.rtc.handle_input(input) {
            tracing::debug!(?id, "webrtc input: {e}");
            return self.remove(id, "protocol error");
        }
        self.mark_unpolled(id);
    }

    /// Notes that connection `id` has new input or writes to act on; it is polled at the end
    /// of the batch, or now once it has taken `MAX_UNPOLLED` (dimpl's queue is bounded).
    fn mark_unpolled(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.unpolled += 1;
        if conn.unpolled == 1 {
            self.unpolled.push(id);
        }
        if conn.unpolled >= MAX_UNPOLLED {
            self.drive(id, None);
        }
    }

    /// Polls every connection that took datagrams since its last poll.
    fn drive_unpolled(&mut self) {
        for id in std::mem::take(&mut self.unpolled) {
            if self.conns.get(&id).is_some_and(|c| c.unpolled > 0) {
                self.drive(id, None);
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(stun) = &mut self.stun {
            if let Some(request) = stun.poll_request(now) {
                // Lost is fine: the next one follows.
                let _ = self.socket.try_send_to(&request, stun.server());
            }
        }
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.wake_at <= now
                    || c.pacer.next_release().is_some_and(|at| at <= now)
                    || c.probe_due().is_some_and(|at| at <= now)
                    || match c.state {
                        ConnState::Open => false,
                        ConnState::Closing { deadline } => deadline <= now,
                        _ => c.give_up_at <= now,
                    }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(conn) = self.conns.get(&id) else { continue };
            match conn.state {
                ConnState::Closing { deadline } if deadline <= now => {
                    self.remove(id, "close grace over");
                }
                ConnState::Offered(_) | ConnState::Connecting if conn.give_up_at <= now => {
                    self.remove(id, "did not connect in time");
                }
                _ => {
                    let rtc_due = conn.wake_at <= now;
                    self.probe_tail(id, now);
                    if rtc_due {
                        self.drive(id, Some(Input::Timeout(now)));
                    } else {
                        // Only the pacer is due. A drive would cost sctp-proto a few walks
                        // of everything in flight, at the pacer's rate of wake-ups.
                        self.release_paced(id, now);
                    }
                }
            }
        }
    }

    /// Sends what connection `id`'s pacer lets go now.
    fn release_paced(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        while let Some((to, datagram)) = conn.pacer.release(now) {
            if self.socket.try_send_to(&datagram, to).is_err() {
                self.send_drops += 1;
            }
            conn.probe.on_sent(now, to, datagram);
        }
    }

    /// Feeds `input` (if any) to connection `id`, moves queued writes into the channel, and
    /// drains the `Rtc` to its next timeout, acting on what comes out.
    fn drive(&mut self, id: ConnId, input: Option<Input<'_>>) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        conn.unpolled = 0;
        conn.counters.drives += 1;
        if let Some(input) = input {
            if let Err(e) = conn.rtc.handle_input(input) {
                tracing::debug!(?id, "webrtc input: {e}");
                self.remove(id, "protocol error");
                return;
            }
        }
        let now = Instant::now();
        // What the pacer held back goes first, as far as the budget allows.
        self.release_paced(id, now);
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let mut failure: Option<&'static str> = None;
        loop {
            conn.counters.polls += 1;
            match conn.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    // Writes are a mutation too: after one, drain again.
                    if pump(conn) {
                        continue;
                    }
                    conn.wake_at = at;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    conn.counters.largest_datagram =
                        conn.counters.largest_datagram.max(t.contents.len());
                    let Some((to, datagram)) =
                        conn.pacer.send(now, t.destination, t.contents.into())
                    else {
                        continue;
                    };
                    if self.socket.try_send_to(&datagram, to).is_err() {
                        // A full socket buffer drops the datagram, as the network would;
                        // SCTP and ICE retransmit.
                        self.send_drops += 1;
                    }
                    conn.probe.on_sent(now, to, datagram);
                }
                Ok(Output::Event(event)) => {
                    if let Some(reason) = on_event(conn, id, event, &self.commands) {
                        failure = Some(reason);
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(?id, "webrtc: {e}");
                    failure = Some("protocol error");
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            return self.remove(id, reason);
        }
        if let ConnState::Closing { .. } = conn.state {
            let buffered = conn
                .channel
                .and_then(|c| conn.rtc.channel(c))
                .map_or(0, |mut ch| ch.buffered_amount());
            if conn.outq.is_empty() && buffered == 0 {
                self.remove(id, "closed after flushing");
            }
        }
    }

    /// Sends the tail of connection `id`'s last flight again if it has been quiet too long
    /// with data unacknowledged (see `probe.rs`).
    fn probe_tail(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if conn.probe_due().is_none_or(|at| at > now) {
            return;
        }
        let outstanding = conn
            .channel
            .and_then(|c| conn.rtc.channel(c))
            .is_some_and(|mut ch| ch.buffered_amount() > 0);
        let Some(tail) = conn.probe.probe(now, outstanding) else { return };
        for (to, datagram) in tail {
            // Not counted as activity: the quiet period goes on until the remote answers.
            let _ = self.socket.try_send_to(datagram, *to);
        }
    }

    fn remove(&mut self, id: ConnId, reason: &str) {
        let Some(mut conn) = self.conns.remove(&id) else { return };
        tracing::debug!(
            ?id,
            remote = ?conn.remote,
            resent = conn.probe.resent(),
            counters = ?conn.counters,
            "webrtc connection gone: {reason}"
        );
        // Tell the peer (an SCTP stream reset closes its channel at once) rather than leave
        // it waiting for ICE to time out. Best effort: one drain, whatever got out got out.
        if let (Some(channel), ConnState::Open | ConnState::Closing { .. }) =
            (conn.channel, &conn.state)
        {
            conn.rtc.direct_api().close_data_channel(channel);
            for (to, datagram) in conn.pacer.drain() {
                let _ = self.socket.try_send_to(&datagram, to);
            }
            for _ in 0..64 {
                match conn.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }
        self.send_drops += conn.pacer.dropped();
        conn.rtc.disconnect();
        conn.shared.close();
        if let Some(opened) = conn.opened.take() {
            let _ = opened.send(Err(WebRtcError::Failed(reason.to_owned())));
        }
        // Dropping `incoming` ends the reader's stream.
        self.by_remote.retain(|_, v| *v != id);
        self.live.store(self.conns.len(), Ordering::Relaxed);
    }
}

/// The `ip port` of every `a=candidate` line with a literal address (mDNS names skipped),
/// bounded like everything taken from a peer.
fn sdp_candidates(sdp: &str) -> Vec<SocketAddr> {
    candidate_fields(sdp)
        .filter_map(|fields| {
            let ip = fields.get(4)?.parse().ok()?;
            let port = fields.get(5)?.parse().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .take(MAX_SDP_CANDIDATES)
        .collect()
}

/// The first fields of each `a=candidate` line: foundation, component, transport, priority,
/// address, port, "typ", type (extensions after those are not needed).
fn candidate_fields(sdp: &str) -> impl Iterator<Item = Vec<&str>> {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a=candidate:"))
        .map(|rest| rest.split_ascii_whitespace().take(8).collect())
}

/// Whether the remote whose SDP is `sdp` says it is a process on this host: it offers host
/// candidates only, at least one, every one a literal address that is loopback or our own
/// socket's. A server-reflexive, relayed or peer-reflexive candidate means the path may leave
/// the host; an mDNS name does not say where the peer is; a list longer than we read is not
/// judged. The claim is checked against where its packets come from (`on_datagram`).
fn on_this_host(sdp: &str, local: SocketAddr) -> bool {
    if local.ip().is_unspecified() {
        return false;
    }
    let mut seen = 0;
    for fields in candidate_fields(sdp) {
        seen += 1;
        let local_host = fields.len() == 8
            && fields[6] == "typ"
            && fields[7] == "host"
            && fields[4].parse::<std::net::IpAddr>().is_ok_and(|ip| is_this_host(ip, local));
        if !local_host || seen > MAX_SDP_CANDIDATES {
            return false;
        }
    }
    seen > 0
}

/// Loopback, or the address our socket is bound to.
fn is_this_host(ip: std::net::IpAddr, local: SocketAddr) -> bool {
    ip.is_loopback() || ip == local.ip()
}

struct PendingConnParts {
    opened: oneshot::Receiver<Result<DataChannel, WebRtcError>>,
}

/// Moves queued writes into the channel while str0m has room; true if anything moved. Also
/// publishes the unacknowledged byte count and wakes a writer that may continue.
fn pump(conn: &mut Conn) -> bool {
    let Some(channel_id) = conn.channel else { return false };
    if !matches!(conn.state, ConnState::Open | ConnState::Closing { .. }) {
        return false;
    }
    let Some(mut channel) = conn.rtc.channel(channel_id) else { return false };
    let mut moved = false;
    while let Some(front) = conn.outq.front() {
        match channel.write(true, front) {
            Ok(true) => {
                conn.counters.messages_sent += 1;
                conn.counters.bytes_sent += front.len() as u64;
                conn.outq_bytes -= front.len();
                conn.outq.pop_front();
                moved = true;
            }
            Ok(false) | Err(_) => break,
        }
    }
    let unacked = conn.outq_bytes + channel.buffered_amount();
    conn.shared.outbound.store(unacked, Ordering::Release);
    if unacked < LOW_WATER || unacked < HIGH_WATER && moved {
        conn.shared.wake_writer();
    }
    moved
}

/// Acts on one str0m event; returns a reason when the connection is finished.
fn on_event(
    conn: &mut Conn,
    id: ConnId,
    event: Event,
    commands: &mpsc::WeakUnboundedSender<Cmd>,
) -> Option<&'static str> {
    match event {
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            Some("ICE disconnected")
        }
        Event::ChannelOpen(channel_id, _label) => {
            if conn.channel.is_some_and(|c| c != channel_id) {
                // We speak over one channel; a second one is not ours to read.
                return None;
            }
            conn.channel = Some(channel_id);
            conn.state = ConnState::Open;
            if let Some(mut channel) = conn.rtc.channel(channel_id) {
                channel.set_buffered_amount_low_threshold(LOW_WATER);
            }
            let (tx, rx) = mpsc::unbounded_channel();
            conn.incoming = Some(tx);
            let Some(commands) = commands.upgrade() else { return Some("endpoint stopping") };
            let remote = conn.remote.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let stream = DataChannel::new(id, remote, commands, conn.shared.clone(), rx);
            match conn.opened.take().map(|opened| opened.send(Ok(stream))) {
                Some(Ok(())) => None,
                _ => Some("nobody waits for the channel"),
            }
        }
        Event::ChannelData(data) => {
            if Some(data.id) != conn.channel {
                return None;
            }
            let len = data.data.len();
            let backlog = conn.shared.inbound.fetch_add(len, Ordering::AcqRel) + len;
            if backlog > MAX_INBOUND {
                return Some("the peer sent more than we could take");
            }
            match &conn.incoming {
                Some(tx) if tx.send(Bytes::from(data.data)).is_ok() => None,
                // The reader is gone: nobody will read this connection again.
                _ => Some("reader gone"),
            }
        }
        Event::ChannelClose(channel_id) if Some(channel_id) == conn.channel => {
            Some("channel closed by peer")
        }
        Event::ChannelBufferedAmountLow(_) => {
            pump(conn);
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_literal_candidates_only() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 198.18.0.1 50000 typ host\r\n\
            a=candidate:2 1 udp 2130706431 2001:db8::1 50001 typ host\r\n\
            a=candidate:3 1 udp 2130706431 0b6e8d0f-1c2a.local 50002 typ host\r\n\
            a=candidate:4 1 udp 1694498815 203.0.113.9 40000 typ srflx raddr 0.0.0.0 rport 0\r\n\
            a=candidate:5 1 udp\r\n\
            a=candidate:6 1 udp 1 1.2.3.4 notaport typ host\r\n";
        let got = sdp_candidates(sdp);
        let want: Vec<SocketAddr> =
            ["198.18.0.1:50000", "[2001:db8::1]:50001", "203.0.113.9:40000"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        assert_eq!(got, want);
        let many = "a=candidate:1 1 udp 1 10.0.0.1 1 typ host\r\n".repeat(1000);
        assert_eq!(sdp_candidates(&many).len(), 32);
    }

    #[test]
    fn only_host_candidates_on_loopback_or_our_address_are_this_host() {
        let local: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let sdp = |lines: &[&str]| -> String {
            lines.iter().map(|l| format!("a=candidate:1 1 udp 2130706431 {l}\r\n")).collect()
        };
        let here = |lines: &[&str]| on_this_host(&sdp(lines), local);
        assert!(here(&["198.18.0.1 50000 typ host"]));
        assert!(here(&["127.0.0.1 50000 typ host", "::1 50001 typ host generation 0"]));
        // Nothing, or nothing literal (mDNS names only): unknown, so not here.
        assert!(!here(&[]));
        assert!(!here(&["0b6e8d0f-1c2a.local 50002 typ host"]));
        assert!(!here(&["198.18.0.1 50000 typ host", "0b6e8d0f-1c2a.local 50002 typ host"]));
        // Another address, or a path through a NAT or a relay, even to one of our addresses.
        assert!(!here(&["198.18.0.2 50000 typ host"]));
        assert!(!here(&["198.18.0.1 50000 typ host", "203.0.113.9 40000 typ srflx"]));
        assert!(!here(&["198.18.0.1 3478 typ relay raddr 203.0.113.9 rport 1"]));
        assert!(!here(&["198.18.0.1 50000 typ prflx"]));
        assert!(!here(&["::ffff:127.0.0.1 50000 typ host"]));
        assert!(!here(&["198.18.0.1 50000"]));
        // More than we read: the rest could name anything.
        let many = vec!["127.0.0.1 1 typ host"; MAX_SDP_CANDIDATES + 1];
        assert!(!here(&many));
        assert!(here(&many[..MAX_SDP_CANDIDATES]));
        // An endpoint bound to no address in particular cannot tell.
        let unbound: SocketAddr = "0.0.0.0:40000".parse().unwrap();
        assert!(!on_this_host(&sdp(&["0.0.0.0 50000 typ host"]), unbound));
    }
}
