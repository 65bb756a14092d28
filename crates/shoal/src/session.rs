//! The session: one listening socket, one peer id and one tracker client shared by every
//! torrent, and the routing of incoming connections to their torrent by info hash.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;
use shoal_proto::mse::EncryptionPolicy;
use shoal_proto::torrent::{Torrent, TorrentConfig};
use shoal_proto::{InfoHash, PeerId};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::dht::{Dht, DhtConfig, DhtError};
use crate::lsd::Lsd;
use crate::mse::{self, PeerStream};
use crate::peer_conn::HANDSHAKE_TIMEOUT;
use crate::port_mapping::{AnnouncedPort, MappingState, PortMapper, Ports};
use crate::rate::{LinkCaps, RateCap};
use crate::stream::shared::StreamShared;
use crate::stream::FileStream;
use crate::torrent_task::{
    self, Command, FilePriority, Phase, StorageTarget, TorrentSetup, TorrentStatus,
};
use crate::tracker::ws::{WebRtcPeer, WsTrackers};
use crate::tracker::{TrackerClient, TrackerClientConfig};
use crate::transport::Socket;
use crate::utp::{UtpSocket, UtpStream};
use crate::webrtc::{self, Endpoint, WebRtcConfig};
use crate::webseed::{WebSeedClient, WebSeedClientConfig};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the torrent is already in this session")]
    Duplicate,
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] shoal_proto::metainfo::MetainfoError),
    #[error("tracker client: {0}")]
    Tracker(String),
    #[error("web seed client: {0}")]
    WebSeed(String),
    #[error("cannot start WebRTC: {0}")]
    WebRtc(#[from] webrtc::WebRtcError),
    #[error("cannot start the DHT: {0}")]
    Dht(#[from] DhtError),
}

/// Why a file could not be opened for streaming.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpenFileError {
    #[error("the torrent has no file {0}")]
    NoSuchFile(usize),
    #[error("the torrent stopped")]
    Stopped,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Where to accept peer connections; `None` to not listen at all.
    pub listen: Option<SocketAddr>,
    pub torrent: TorrentConfig,
    /// WebRTC peers, found through `ws://` and `wss://` trackers; `None` turns WebRTC off
    /// (those trackers are then skipped).
    pub webrtc: Option<WebRtcConfig>,
    /// Bytes per second all peer connections together may send; `None` for no cap (either
    /// can be changed later: [`Session::upload_limit`]).
    pub max_upload_rate: Option<u64>,
    /// Bytes per second all peer connections and web seeds together may deliver; `None` for
    /// no cap ([`Session::download_limit`]).
    pub max_download_rate: Option<u64>,
    /// The Mainline DHT (BEP 5) node, for peers no tracker names; `None` turns it off (the
    /// default here: a library user opts in, the command line turns it on).
    pub dht: Option<DhtConfig>,
    /// Local service discovery (BEP 14) on the LAN; off by default here, as the DHT.
    pub lsd: bool,
    /// Ask the home router (PCP, NAT-PMP, UPnP IGD) to forward the listen port (TCP and UDP,
    /// and the DHT's UDP port) to us; off by default here, as the DHT.
    pub port_mapping: bool,
    /// Protocol encryption (MSE) for TCP and uTP peers, both ways.
    pub encryption: EncryptionPolicy,
    /// uTP (BEP 29) on the listen port's UDP side, both ways; outgoing connections try it
    /// beside TCP (see `peer_conn::open`). On by default.
    pub utp: bool,
    /// Where torrents stored in folders keep their resume records ([`crate::resume`]), so a
    /// restart with unchanged files does not hash them again; `None` (the default here, as
    /// the DHT: the command line turns it on) keeps none.
    pub resume_dir: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            torrent: TorrentConfig::default(),
            webrtc: Some(WebRtcConfig::default()),
            max_upload_rate: None,
            max_download_rate: None,
            dht: None,
            lsd: false,
            port_mapping: false,
            encryption: EncryptionPolicy::default(),
            utp: true,
            resume_dir: None,
        }
    }
}

/// What to add.
pub enum TorrentSource {
    Metainfo(Box<Metainfo>),
    Magnet(Magnet),
}

pub struct AddTorrent {
    pub source: TorrentSource,
    pub target: StorageTarget,
    /// File indices to download; `None` for all.
    pub only_files: Option<Vec<usize>>,
    /// How soon each file (by index) is fetched, among the selected ones; `None`: all alike.
    pub file_priorities: Option<Vec<FilePriority>>,
    /// Peers to dial besides what trackers return.
    pub peers: Vec<SocketAddr>,
    /// Trackers besides the torrent's own (each its own tier).
    pub extra_trackers: Vec<String>,
    /// HTTP web seeds (BEP 19) besides the torrent's `url-list` or the magnet's `ws=`.
    pub web_seeds: Vec<String>,
}

/// Where connections for a torrent go, and how many more it would take.
#[derive(Clone)]
struct Route {
    commands: mpsc::UnboundedSender<Command>,
    room: Arc<AtomicUsize>,
}

type Routes = Arc<Mutex<HashMap<InfoHash, Route>>>;

fn route(routes: &Routes, info_hash: &InfoHash) -> Option<Route> {
    routes.lock().unwrap_or_else(|e| e.into_inner()).get(info_hash).cloned()
}

pub struct Session {
    config: SessionConfig,
    peer_id: PeerId,
    clock: Clock,
    listen_addr: Option<SocketAddr>,
    routes: Routes,
    tracker_client: Arc<TrackerClient>,
    webrtc: Option<Endpoint>,
    web_seed_client: Arc<WebSeedClient>,
    upload_limit: RateCap,
    download_limit: RateCap,
    dht: Option<Dht>,
    lsd: Option<Lsd>,
    port_mapper: Option<PortMapper>,
    announced_port: AnnouncedPort,
    utp: Option<Arc<UtpSocket>>,
}

impl Session {
    pub async fn new(config: SessionConfig) -> Result<Session, SessionError> {
        let peer_id = PeerId::generate(rand::random());
        let routes: Routes = Arc::default();
        let listen_addr = match config.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| SessionError::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| SessionError::Listen { addr, source })?;
                tokio::spawn(accept_loop(listener, routes.clone(), config.encryption));
                Some(bound)
            }
            None => None,
        };
        // uTP on the UDP side of the listen port, where peers dial it (trackers and the DHT
        // carry one port for both).
        let utp = match (config.utp, listen_addr) {
            (true, Some(listen)) => match UtpSocket::bind(listen).await {
                Ok((socket, accepted)) => {
                    tokio::spawn(accept_utp(accepted, routes.clone(), config.encryption));
                    Some(Arc::new(socket))
                }
                // Another program may hold that UDP port (the TCP one was free): TCP alone
                // still reaches every peer but the uTP-only ones.
                Err(e) => {
                    tracing::warn!(%listen, "no uTP: cannot open the listen port's UDP side: {e}");
                    None
                }
            },
            _ => None,
        };
        // Listening on one address means speaking from it too (see `peer_conn::source_ip`).
        let local_ip = listen_addr.map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
        let tracker_config = TrackerClientConfig { local_ip, ..TrackerClientConfig::default() };
        let tracker_client =
            TrackerClient::new(tracker_config).map_err(|e| SessionError::Tracker(e.to_string()))?;
        let webrtc = match &config.webrtc {
            Some(rtc) => {
                let endpoint = webrtc::start(rtc).await?;
                let (peers_tx, peers_rx) = mpsc::unbounded_channel();
                let admission_routes = routes.clone();
                let room = move |info_hash: &InfoHash| {
                    route(&admission_routes, info_hash)
                        .filter(|r| !r.commands.is_closed())
                        .map_or(0, |r| r.room.load(Ordering::Relaxed))
                };
                let ws = WsTrackers::new(endpoint.clone(), peer_id, peers_tx, Arc::new(room));
                tracker_client.enable_websocket(Arc::new(ws));
                tokio::spawn(route_webrtc_peers(peers_rx, routes.clone()));
                Some(endpoint)
            }
            None => None,
        };
        let download_limit = RateCap::new(config.max_download_rate);
        let web_seed_client = WebSeedClient::new(WebSeedClientConfig::default())
            .map_err(|e| SessionError::WebSeed(e.to_string()))?
            .with_download_cap(download_limit.clone());
        let dht = match &config.dht {
            Some(dht) => Some(start_dht(dht, listen_addr).await?),
            None => None,
        };
        let lsd = match (config.lsd, listen_addr) {
            (true, Some(listen)) => start_lsd(listen.port(), routes.clone()),
            _ => None,
        };
        let announced_port = AnnouncedPort::new(listen_addr.map_or(0, |a| a.port()));
        let port_mapper = match (config.port_mapping, listen_addr) {
            (true, Some(listen)) => {
                start_port_mapping(listen, utp.is_some(), dht.as_ref(), &announced_port)
            }
            _ => None,
        };
        Ok(Session {
            utp,
            port_mapper,
            announced_port,
            lsd,
            dht,
            upload_limit: RateCap::new(config.max_upload_rate),
            download_limit,
            web_seed_client: Arc::new(web_seed_client),
            config,
            peer_id,
            clock: Clock::new(),
            listen_addr,
            routes,
            tracker_client: Arc::new(tracker_client),
            webrtc,
        })
    }

    /// The process's upload cap, for whatever else sends on its behalf (`shoal serve`'s web
    /// seed answers) and to change it: the same cap every peer connection waits on.
    pub fn upload_limit(&self) -> RateCap {
        self.upload_limit.clone()
    }

    /// The process's download cap (peers and web seeds), to read or change.
    pub fn download_limit(&self) -> RateCap {
        self.download_limit.clone()
    }

    /// The UDP address WebRTC peers connect to, when WebRTC is on.
    pub fn webrtc_addr(&self) -> Option<SocketAddr> {
        self.webrtc.as_ref().map(Endpoint::local_addr)
    }

    /// Our WebRTC address as the STUN server saw it, when one was configured and answered.
    pub fn webrtc_stun_address(&self) -> Option<SocketAddr> {
        self.webrtc.as_ref().and_then(Endpoint::stun_address)
    }

    /// WebRTC connections pending or open, across all torrents.
    pub fn webrtc_connections(&self) -> usize {
        self.webrtc.as_ref().map_or(0, Endpoint::live_connections)
    }

    /// The session's DHT node, when the DHT is on.
    pub fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref()
    }

    /// What the router forwards to us, when port mapping is on.
    pub fn port_mapping(&self) -> Option<MappingState> {
        self.port_mapper.as_ref().map(PortMapper::state)
    }

    /// Follows what the router forwards to us, when port mapping is on.
    pub fn watch_port_mapping(&self) -> Option<tokio::sync::watch::Receiver<MappingState>> {
        self.port_mapper.as_ref().map(PortMapper::watch)
    }

    /// Ends what outlives the torrents: the DHT's routing table is saved for the next start,
    /// the router's port mappings are deleted. Call it after the torrents' `shutdown`.
    pub async fn shutdown(&self) {
        if let Some(dht) = &self.dht {
            if let Err(e) = dht.save().await {
                tracing::warn!("{e}");
            }
        }
        if let Some(mapper) = &self.port_mapper {
            mapper.shutdown().await;
        }
    }

    /// The address peers can dial (the bound port, with the configured IP).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn add_torrent(&self, add: AddTorrent) -> Result<TorrentHandle, SessionError> {
        let (info_hash, info_bytes, mut trackers, peers, name, mut web_seeds) = match add.source {
            TorrentSource::Metainfo(m) => {
                let name = Some(m.info.name.clone());
                let info_bytes = Some(Bytes::from(m.info_bytes));
                (m.info_hash, info_bytes, m.trackers, add.peers, name, m.web_seeds)
            }
            TorrentSource::Magnet(m) => {
                let mut peers = add.peers;
                peers.extend(m.peers.iter().filter_map(|p| p.parse::<SocketAddr>().ok()));
                let name = m.display_name.clone();
                (m.info_hash, None, vec![m.trackers.clone()], peers, name, m.web_seeds)
            }
        };
        for url in add.web_seeds {
            if !web_seeds.contains(&url) {
                web_seeds.push(url);
            }
        }
        for url in add.extra_trackers {
            if !trackers.iter().flatten().any(|t| *t == url) {
                trackers.push(vec![url]);
            }
        }
        if !self.tracker_client.websocket_enabled() {
            // Without WebRTC a WebSocket tracker has nothing to offer us.
            for tier in &mut trackers {
                tier.retain(|url| !crate::tracker::is_websocket(url));
            }
        }
        trackers.retain(|tier| !tier.is_empty());
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.get(&info_hash).is_some_and(|r| !r.commands.is_closed()) {
            return Err(SessionError::Duplicate);
        }
        let mut config = self.config.torrent.clone();
        config.listen_port = self.listen_addr.map(|a| a.port());
        let random_seed: u64 = rand::random();
        let core = Torrent::new(config, info_hash, self.peer_id, info_bytes, random_seed)?;
        let shared = Arc::new(StreamShared::default());
        let room = Arc::new(AtomicUsize::new(core.connection_room()));
        let (commands, status) = torrent_task::spawn(TorrentSetup {
            room: room.clone(),
            core,
            target: add.target,
            only_files: add.only_files,
            file_priorities: add.file_priorities,
            trackers,
            peers,
            announced_port: self.announced_port.clone(),
            local_ip: self.tracker_client.config().local_ip,
            tracker_client: self.tracker_client.clone(),
            clock: self.clock,
            random_seed,
            shared: shared.clone(),
            web_seeds,
            web_seed_client: self.web_seed_client.clone(),
            caps: LinkCaps {
                upload: Some(self.upload_limit.clone()),
                download: Some(self.download_limit.clone()),
            },
            dht: self.dht.clone(),
            lsd: self.lsd.clone(),
            encryption: self.config.encryption,
            utp: self.utp.clone(),
            resume_dir: self.config.resume_dir.clone(),
        });
        routes.insert(info_hash, Route { commands: commands.clone(), room });
        Ok(TorrentHandle { info_hash, name, commands, status, shared })
    }
}

/// Joins the LAN's LSD group; peers it hears of go to their torrent. Without it (the port
/// taken by a client that does not share it, no multicast route) the session goes on.
fn start_lsd(listen_port: u16, routes: Routes) -> Option<Lsd> {
    let deliver = move |info_hash: InfoHash, peer: SocketAddr| {
        if let Some(route) = route(&routes, &info_hash) {
            let _ = route.commands.send(Command::LsdPeer(peer));
        }
    };
    match Lsd::start(listen_port, Arc::new(deliver)) {
        Ok(lsd) => Some(lsd),
        Err(e) => {
            tracing::warn!("{e}; no local service discovery");
            None
        }
    }
}

/// Maps the listen port at the router: TCP, and UDP for uTP (the listen port's UDP side,
/// which peers dial), and the DHT's UDP port when it is another (uTP took the listen port's).
/// Not for a listener on loopback (nothing outside reaches it) nor an IPv6 one (no NAT to
/// open: a firewall pinhole is another matter).
fn start_port_mapping(
    listen: SocketAddr,
    utp: bool,
    dht: Option<&Dht>,
    announced: &AnnouncedPort,
) -> Option<PortMapper> {
    let SocketAddr::V4(listen) = listen else { return None };
    if listen.ip().is_loopback() {
        return None;
    }
    let local_ip = Some(*listen.ip()).filter(|ip| !ip.is_unspecified());
    let dht = dht.map(|d| d.local_addr().port());
    let udp = if utp { Some(listen.port()) } else { dht };
    let ports = Ports { tcp: listen.port(), udp, dht };
    Some(PortMapper::start(ports, local_ip, announced.clone()))
}

/// Starts the DHT node on the UDP side of the listen port unless the config names a port; any
/// port when that one is taken (by uTP, when it is on).
async fn start_dht(config: &DhtConfig, listen: Option<SocketAddr>) -> Result<Dht, DhtError> {
    let mut config = config.clone();
    let Some(SocketAddr::V4(listen)) = listen else { return Dht::start(config).await };
    // Listening on one address means speaking from it too.
    if config.bind.ip().is_unspecified() {
        config.bind.set_ip(*listen.ip());
    }
    if config.bind.port() == 0 {
        let mut on_listen_port = config.clone();
        on_listen_port.bind.set_port(listen.port());
        match Dht::start(on_listen_port).await {
            Ok(dht) => return Ok(dht),
            Err(e) => tracing::debug!("{e}; the DHT takes any port"),
        }
    }
    Dht::start(config).await
}

/// Incoming connections allowed to be in their handshake at once; past that, new ones are
/// closed at once, so a flood of silent connections cannot exhaust file descriptors.
const MAX_PENDING_HANDSHAKES: usize = 256;

async fn accept_loop(listener: TcpListener, routes: Routes, policy: EncryptionPolicy) {
    let handshakes = Handshakes::new(routes, policy);
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => handshakes.start(Socket::Tcp(stream), addr),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Incoming connections' handshakes, each read in a task of its own, at most
/// [`MAX_PENDING_HANDSHAKES`] at once (TCP and uTP each have their own budget).
struct Handshakes {
    pending: Arc<tokio::sync::Semaphore>,
    routes: Routes,
    policy: EncryptionPolicy,
}

impl Handshakes {
    fn new(routes: Routes, policy: EncryptionPolicy) -> Self {
        let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        Handshakes { pending, routes, policy }
    }

    /// Reads the connection's handshakes and routes it, or closes it at once when too many
    /// are in progress.
    fn start(&self, socket: Socket, addr: SocketAddr) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "too many handshakes in progress; closing");
            return;
        };
        let (routes, policy) = (self.routes.clone(), self.policy);
        tokio::spawn(async move {
            route_incoming(socket, addr, routes, policy).await;
            drop(permit);
        });
    }
}

/// Reads the handshakes of an incoming connection (a plain BitTorrent one, or MSE and the
/// BitTorrent one inside, as `policy` allows) and hands the stream to its torrent.
async fn route_incoming(
    mut socket: Socket,
    addr: SocketAddr,
    routes: Routes,
    policy: EncryptionPolicy,
) {
    use tokio::io::AsyncReadExt;
    // Both a plain handshake (68 bytes) and an MSE public key (96) are longer than this.
    let mut first = [0u8; 20];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let opened = if shoal_proto::mse::looks_plain(&first) == Some(true) {
        if !policy.accepts_plain() {
            tracing::debug!(%addr, "plaintext handshake refused: encryption is required");
            return;
        }
        let mut stream = PeerStream::plain(socket);
        stream.read_ahead.extend_from_slice(&first);
        stream.read_handshake(addr).await.map(|handshake| (stream, handshake))
    } else {
        if !policy.accepts_encrypted() {
            tracing::debug!(%addr, "encrypted handshake refused: encryption is disabled");
            return;
        }
        mse::respond(socket, addr, &first, policy, |obfuscated| torrent_named(&routes, obfuscated))
            .await
    };
    let (stream, handshake) = match opened {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(%addr, "incoming handshake failed: {e}");
            return;
        }
    };
    if let Some(route) = route(&routes, &handshake.info_hash) {
        let _ = route.commands.send(Command::Incoming { stream, addr, handshake });
    }
}

/// Routes incoming uTP connections as [`accept_loop`] does TCP ones.
async fn accept_utp(
    mut accepted: mpsc::Receiver<(UtpStream, SocketAddr)>,
    routes: Routes,
    policy: EncryptionPolicy,
) {
    let handshakes = Handshakes::new(routes, policy);
    while let Some((stream, addr)) = accepted.recv().await {
        handshakes.start(Socket::Utp(stream), addr);
    }
}

/// The torrent of ours whose `HASH('req2', info hash)` an MSE initiator sent.
fn torrent_named(routes: &Routes, obfuscated: &[u8; 20]) -> Option<InfoHash> {
    let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
    routes.keys().find(|hash| shoal_proto::mse::obfuscated_info_hash(hash) == *obfuscated).copied()
}

/// Hands peers that reached us over WebRTC to their torrent.
async fn route_webrtc_peers(mut peers: mpsc::UnboundedReceiver<WebRtcPeer>, routes: Routes) {
    while let Some(peer) = peers.recv().await {
        if let Some(route) = route(&routes, &peer.info_hash) {
            let WebRtcPeer { channel, handshake, .. } = peer;
            let _ = route.commands.send(Command::IncomingWebRtc { channel, handshake });
        }
    }
}

/// Controls one torrent of a session.
#[derive(Clone)]
pub struct TorrentHandle {
    info_hash: InfoHash,
    name: Option<String>,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<TorrentStatus>,
    shared: Arc<StreamShared>,
}

impl TorrentHandle {
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The torrent's name, once known.
    pub fn name(&self) -> Option<String> {
        self.status().info.as_ref().map(|i| i.name.clone()).or_else(|| self.name.clone())
    }

    pub fn status(&self) -> TorrentStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status update.
    pub fn watch(&self) -> watch::Receiver<TorrentStatus> {
        self.status.clone()
    }

    /// Waits until every wanted piece is verified, or the torrent fails.
    pub async fn wait_complete(&self) -> Result<(), String> {
        let mut rx = self.status.clone();
        loop {
            match &rx.borrow_and_update().phase {
                Phase::Seeding => return Ok(()),
                Phase::Failed(e) => return Err(e.clone()),
                Phase::Stopped => return Err("the torrent stopped".into()),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err("the torrent task ended".into());
            }
        }
    }

    /// Opens file `index` for streaming: reads wait for its pieces, which are fetched first.
    /// Waits for the metadata (magnet) and the check of existing data first.
    pub async fn open_file(&self, index: usize) -> Result<FileStream, OpenFileError> {
        loop {
            let changed = self.shared.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.is_closed() {
                return Err(OpenFileError::Stopped);
            }
            if let Some(storage) = self.shared.storage() {
                let layout = storage.layout();
                let spec = layout.files().get(index).ok_or(OpenFileError::NoSuchFile(index))?;
                if spec.padding {
                    return Err(OpenFileError::NoSuchFile(index));
                }
                let range = layout.file_range(index).ok_or(OpenFileError::NoSuchFile(index))?;
                return Ok(FileStream::new(
                    self.shared.clone(),
                    self.commands.clone(),
                    range.start,
                    range.end - range.start,
                ));
            }
            // Metadata or the recheck may also end in failure, which closes `shared`.
            changed.await;
        }
    }

    /// Disconnects, tells trackers we stopped, flushes storage.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
