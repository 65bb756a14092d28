//! Simulated HTTP web seeds (BEP 19): a server with a round-trip latency and a bandwidth shared
//! by every node fetching from it, serving the fixture's content, optionally with some pieces
//! corrupted or every request failing.

use std::time::Duration;

use bytes::Bytes;
use shoal_proto::torrent::WebSeedFetch;
use shoal_proto::webseed::WebSeedError;
use shoal_proto::Instant;

/// A web seed's behaviour.
#[derive(Clone, Debug)]
pub struct WebSeedConfig {
    /// The URL nodes are given (the single-file fixture is the URL itself).
    pub url: String,
    /// Bytes per second it sends, shared by all fetches (served one after another).
    pub rate: u64,
    /// Time to the first byte of each fetch.
    pub latency: Duration,
    /// Pieces whose bytes it serves wrong (one flipped byte each).
    pub corrupt_pieces: Vec<u32>,
    /// Answers every request with this HTTP status instead of data.
    pub status: Option<u16>,
}

impl WebSeedConfig {
    pub fn new(url: impl Into<String>, rate: u64) -> Self {
        WebSeedConfig {
            url: url.into(),
            rate,
            latency: Duration::from_millis(30),
            corrupt_pieces: Vec::new(),
            status: None,
        }
    }
}

pub(crate) struct SimWebSeed {
    pub config: WebSeedConfig,
    /// When the server's link is free again.
    pub busy_until: Instant,
    pub fetches: u64,
    /// Body bytes it sent, whole fetches and the part of cancelled ones that went out.
    pub bytes_sent: u64,
}

/// A fetch the server is sending: the node's answer arrives at `done` unless it cancels.
pub(crate) struct PendingFetch {
    pub seed: shoal_proto::PeerKey,
    /// Index of the server in `Sim::web_seeds` (none: nobody listens at the URL).
    pub server: Option<usize>,
    /// When its first byte leaves the server.
    pub start: Instant,
    pub done: Instant,
    pub result: Result<Bytes, WebSeedError>,
}

impl PendingFetch {
    /// The bytes that reached the node by `now`, from the start of the range.
    pub fn arrived(&self, now: Instant) -> Bytes {
        let Ok(data) = &self.result else { return Bytes::new() };
        if now <= self.start {
            return Bytes::new();
        }
        let total = self.done.saturating_since(self.start).as_secs_f64();
        let sent = now.saturating_since(self.start).as_secs_f64();
        let share = if total > 0.0 { (sent / total).min(1.0) } else { 1.0 };
        data.slice(..(data.len() as f64 * share) as usize)
    }
}

impl SimWebSeed {
    /// What the server answers to `fetch` and when that answer is complete.
    pub fn serve(
        &mut self,
        now: Instant,
        fetch: &WebSeedFetch,
        content: &Bytes,
        piece_length: u64,
    ) -> (Instant, Instant, Result<Bytes, WebSeedError>) {
        self.fetches += 1;
        let first_byte = now + self.config.latency;
        if let Some(status) = self.config.status {
            return (first_byte, first_byte, Err(WebSeedError::Status(status)));
        }
        let range = fetch.plan.range.clone();
        let mut data = content.slice(range.start as usize..range.end as usize);
        let corrupt: Vec<u64> = self
            .config
            .corrupt_pieces
            .iter()
            .map(|&p| u64::from(p) * piece_length)
            .filter(|at| range.contains(at))
            .collect();
        if !corrupt.is_empty() {
            let mut bytes = data.to_vec();
            for at in corrupt {
                bytes[(at - range.start) as usize] ^= 0xff;
            }
            data = Bytes::from(bytes);
        }
        let start = first_byte.max(self.busy_until);
        let send = Duration::from_secs_f64(data.len() as f64 / self.config.rate.max(1) as f64);
        self.busy_until = start + send;
        (start, self.busy_until, Ok(data))
    }
}
