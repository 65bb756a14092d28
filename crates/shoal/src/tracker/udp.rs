//! UDP tracker requests (BEP 15) over tokio.
//!
//! Each request gets its own ephemeral socket, connected to the tracker so that only its
//! packets arrive (and an ICMP "port unreachable" fails the request at once). Connection ids
//! are tied to our address, not to the socket, so they are cached per tracker address and
//! shared by every request for a minute.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use shoal_proto::InfoHash;
use shoal_tracker_proto::udp::{self as wire, AddressFamily, Response};
use shoal_tracker_proto::{AnnounceRequest, AnnounceResponse, ScrapeResponse};
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

use super::{TrackerClientConfig, TrackerError};

/// How many tracker addresses keep a cached connection id; past this, expired ones are
/// dropped, then all (a session talks to far fewer trackers).
const MAX_CACHED_IDS: usize = 4096;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// Connection ids by tracker address, with the time each was obtained.
#[derive(Default)]
pub(super) struct ConnectionIds {
    ids: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
}

impl ConnectionIds {
    fn get(&self, addr: SocketAddr, ttl: std::time::Duration) -> Option<u64> {
        let ids = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ids.get(&addr).filter(|(_, at)| at.elapsed() < ttl).map(|(id, _)| *id)
    }

    fn put(&self, addr: SocketAddr, id: u64, ttl: std::time::Duration) {
        let mut ids = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ids.len() >= MAX_CACHED_IDS {
            ids.retain(|_, (_, at)| at.elapsed() < ttl);
            if ids.len() >= MAX_CACHED_IDS {
                ids.clear();
            }
        }
        ids.insert(addr, (id, Instant::now()));
    }

    fn forget(&self, addr: SocketAddr) {
        let mut ids = self.ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ids.remove(&addr);
    }
}

pub(super) async fn announce(
    ids: &ConnectionIds,
    config: &TrackerClientConfig,
    url: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    let tracker = Tracker::open(url, config).await?;
    let response = tracker
        .request(ids, config, |connection_id, transaction_id| {
            Ok(wire::encode_announce_request(connection_id, transaction_id, req, &tracker.url_data))
        })
        .await?;
    match response {
        Response::Announce { response, .. } => Ok(response),
        _ => Err(TrackerError::UnexpectedAction),
    }
}

pub(super) async fn scrape(
    ids: &ConnectionIds,
    config: &TrackerClientConfig,
    url: &str,
    info_hashes: &[InfoHash],
) -> Result<ScrapeResponse, TrackerError> {
    if info_hashes.is_empty() {
        return Err(wire::UdpError::NoHashes.into());
    }
    let tracker = Tracker::open(url, config).await?;
    let mut files = Vec::with_capacity(info_hashes.len());
    // One packet holds at most 74 hashes; larger scrapes take several.
    for chunk in info_hashes.chunks(wire::MAX_SCRAPE_HASHES) {
        let response = tracker
            .request(ids, config, |connection_id, transaction_id| {
                Ok(wire::encode_scrape_request(connection_id, transaction_id, chunk)?)
            })
            .await?;
        let Response::Scrape { stats, .. } = response else {
            return Err(TrackerError::UnexpectedAction);
        };
        if stats.len() != chunk.len() {
            return Err(TrackerError::ScrapeCountMismatch { asked: chunk.len(), got: stats.len() });
        }
        files.extend(chunk.iter().copied().zip(stats));
    }
    Ok(ScrapeResponse { files })
}

/// A tracker address with a socket connected to it.
struct Tracker {
    socket: UdpSocket,
    addr: SocketAddr,
    family: AddressFamily,
    url_data: Vec<u8>,
}

impl Tracker {
    async fn open(url: &str, config: &TrackerClientConfig) -> Result<Tracker, TrackerError> {
        let parsed = wire::parse_udp_url(url)?;
        let addr = resolve(&parsed.host, parsed.port).await?;
        let local: SocketAddr =
            match (crate::peer_conn::source_ip(config.local_ip, addr.ip()), addr) {
                (Some(ip), _) => (ip, 0).into(),
                (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(Tracker { socket, addr, family: AddressFamily::of(&addr), url_data: parsed.url_data })
    }

    /// Sends the request built by `packet(connection_id, transaction_id)`, connecting first
    /// when no fresh connection id is cached, and retransmits on silence with the timeout
    /// doubling each time (BEP 15). A silent tracker may have dropped our connection id, so
    /// a retry connects again. An error packet becomes [`TrackerError::Failure`].
    async fn request(
        &self,
        ids: &ConnectionIds,
        config: &TrackerClientConfig,
        packet: impl Fn(u64, u32) -> Result<Vec<u8>, TrackerError>,
    ) -> Result<Response, TrackerError> {
        let mut attempt = 0u32;
        loop {
            let wait = config
                .udp_base_timeout
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
            let deadline = Instant::now() + wait;
            let outcome = match ids.get(self.addr, config.connection_id_ttl) {
                Some(connection_id) => {
                    self.exchange(&packet(connection_id, rand::random())?, deadline).await
                }
                None => match self.connect(deadline).await {
                    Ok(connection_id) => {
                        ids.put(self.addr, connection_id, config.connection_id_ttl);
                        // The announce gets a full timeout of its own.
                        let deadline = Instant::now() + wait;
                        self.exchange(&packet(connection_id, rand::random())?, deadline).await
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(Response::Error { message, .. }) => {
                    ids.forget(self.addr);
                    return Err(TrackerError::Failure(message));
                }
                Ok(response) => return Ok(response),
                Err(TrackerError::Timeout) if attempt < config.udp_max_retries => {
                    ids.forget(self.addr);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<u64, TrackerError> {
        match self.exchange(&wire::encode_connect_request(rand::random()), deadline).await? {
            Response::Connect { connection_id, .. } => Ok(connection_id),
            Response::Error { message, .. } => Err(TrackerError::Failure(message)),
            _ => Err(TrackerError::UnexpectedAction),
        }
    }

    /// Sends `packet` and waits until `deadline` for the answer with the same transaction
    /// id; answers to earlier tries (other ids) are ignored.
    async fn exchange(&self, packet: &[u8], deadline: Instant) -> Result<Response, TrackerError> {
        let transaction_id = transaction_id_of(packet);
        self.socket.send(packet).await?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let len = match timeout_at(deadline, self.socket.recv(&mut buf)).await {
                Ok(received) => received?,
                Err(_elapsed) => return Err(TrackerError::Timeout),
            };
            let datagram = buf.get(..len).unwrap_or_default();
            // The transaction id sits at bytes 4..8 of every answer; check it before the
            // rest, so a stale or stray datagram cannot fail the exchange.
            if datagram.get(4..8) != Some(&transaction_id.to_be_bytes()[..]) {
                continue;
            }
            return Ok(wire::decode_response(datagram, self.family)?);
        }
    }
}

/// The transaction id of a request we built: bytes 12..16 of every client packet.
fn transaction_id_of(packet: &[u8]) -> u32 {
    packet.get(12..16).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, TrackerError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| TrackerError::Resolve { host: host.to_owned(), source })?;
    addrs.next().ok_or_else(|| TrackerError::NoAddress(host.to_owned()))
}
