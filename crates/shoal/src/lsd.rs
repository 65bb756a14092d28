//! Local service discovery (BEP 14) for the session: one UDP socket on the LAN multicast group
//! (shared with other clients on this machine, `SO_REUSEADDR`), announces of our torrents and
//! the announces of others. A peer an announce names is handed only to a torrent we have;
//! announces are counted against their source (a spoofed flood cannot fill a torrent's peer
//! book faster than the budget allows), our own are recognised by their cookie.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::lsd::{LsdAnnounce, LSD_GROUP_V4, MAX_ANNOUNCE_BYTES};
use shoal_proto::rate::SourceBuckets;
use shoal_proto::InfoHash;
use tokio::net::UdpSocket;

/// How often each torrent announces itself (BEP 14 asks for no more than once a minute).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The shortest gap between two announces of one torrent, whatever restarts its timer.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_secs(60);
/// Announces a source may send at once, and a second after that.
const SOURCE_BURST: u32 = 20;
const SOURCE_RATE: u32 = 2;
const MAX_SOURCES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LsdError {
    #[error("cannot open the LSD socket on port {port}: {source}")]
    Socket { port: u16, source: std::io::Error },
}

/// Where the peers an announce names go: the torrent with that info hash, if we have it.
pub(crate) type Deliver = Arc<dyn Fn(InfoHash, SocketAddr) + Send + Sync>;

/// The session's LSD socket.
#[derive(Clone)]
pub struct Lsd {
    socket: Arc<UdpSocket>,
    cookie: String,
    /// The port announced: where we accept peers.
    port: u16,
    /// When each torrent last announced, so a restart of its timer cannot flood the LAN.
    last: Arc<Mutex<HashMap<InfoHash, Instant>>>,
}

impl Lsd {
    /// Joins the group on the default interface and starts reading announces.
    pub(crate) fn start(listen_port: u16, deliver: Deliver) -> Result<Lsd, LsdError> {
        let group_port = LSD_GROUP_V4.port();
        let socket = open_socket(group_port)
            .map_err(|source| LsdError::Socket { port: group_port, source })?;
        let socket = Arc::new(socket);
        let cookie = format!("{:016x}", rand::random::<u64>());
        tokio::spawn(read_announces(socket.clone(), cookie.clone(), deliver));
        Ok(Lsd { socket, cookie, port: listen_port, last: Arc::default() })
    }

    /// Says on the LAN that we have `info_hash` (at most once a minute per torrent).
    pub async fn announce(&self, info_hash: InfoHash) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            // Only the last minute matters; removed torrents leave nothing behind.
            last.retain(|_, t| now.duration_since(*t) < MIN_ANNOUNCE_GAP);
            if last.contains_key(&info_hash) {
                return;
            }
            last.insert(info_hash, now);
        }
        let announce = LsdAnnounce {
            port: self.port,
            info_hashes: vec![info_hash],
            cookie: Some(self.cookie.clone()),
        };
        if let Err(e) = self.socket.send_to(&announce.encode(), LSD_GROUP_V4).await {
            tracing::debug!("LSD announce not sent: {e}");
        }
    }
}

fn open_socket(port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Other clients on this machine listen on the same group and port.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.join_multicast_v4(LSD_GROUP_V4.ip(), &Ipv4Addr::UNSPECIFIED)?;
    // The LAN only; and our other processes on this machine hear us too.
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    UdpSocket::from_std(socket.into())
}

async fn read_announces(socket: Arc<UdpSocket>, cookie: String, deliver: Deliver) {
    let mut buf = vec![0u8; MAX_ANNOUNCE_BYTES + 1];
    let epoch = Instant::now();
    let mut budget = SourceBuckets::new(SOURCE_RATE, SOURCE_BURST, MAX_SOURCES);
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("LSD socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let SocketAddr::V4(from) = from else { continue };
        if !budget.allow(*from.ip(), epoch.elapsed().as_millis() as u64) {
            continue;
        }
        let announce = match LsdAnnounce::parse(&buf[..len]) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%from, "LSD datagram ignored: {e}");
                continue;
            }
        };
        if announce.cookie.as_deref() == Some(cookie.as_str()) {
            continue; // our own, looped back
        }
        let peer = SocketAddr::V4(SocketAddrV4::new(*from.ip(), announce.port));
        for info_hash in announce.info_hashes {
            deliver(info_hash, peer);
        }
    }
}

/// A torrent's LSD announces, until dropped.
pub(crate) struct Announces(tokio::task::AbortHandle);

impl Announces {
    pub(crate) fn start(lsd: Lsd, info_hash: InfoHash) -> Announces {
        let task = tokio::spawn(async move {
            loop {
                lsd.announce(info_hash).await;
                tokio::time::sleep(ANNOUNCE_INTERVAL).await;
            }
        });
        Announces(task.abort_handle())
    }
}

impl Drop for Announces {
    fn drop(&mut self) {
        self.0.abort();
    }
}
