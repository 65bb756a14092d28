//! The Mainline DHT (BEP 5): one node per session, which torrents ask for peers and announce
//! themselves to. The node is the `mainline` crate's (its own thread and UDP socket; routing
//! table, tokens, BEP 42 node ids, a bounded peer store: docs/ARCHITECTURE.md says why this
//! crate); what is ours is when a torrent looks up and announces, keeping the routing table
//! between runs, and how many queries a source may make (`source_limit.rs`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod source_limit;

use futures_util::StreamExt;
use mainline::{Dht as Node, Id};
use shoal_proto::InfoHash;

use crate::atomic_file::write_atomically;
use crate::port_mapping::AnnouncedPort;

/// How a session's DHT node starts.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Nodes to join the DHT through (`HOST:PORT`); `None` for the well-known routers.
    pub bootstrap: Option<Vec<String>>,
    /// The UDP address the node listens on; port 0 for any.
    pub bind: SocketAddrV4,
    /// Where the routing table is kept between runs; `None` to keep nothing.
    pub state_file: Option<PathBuf>,
    /// Answer other nodes' queries from the start, for a node known to be reachable (a
    /// server with a public address). Otherwise the node answers once it has run long
    /// enough without finding itself firewalled, as BEP 5 asks of nodes behind a NAT.
    pub server_mode: bool,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            bootstrap: None,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            state_file: None,
            server_mode: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("cannot open the DHT's UDP socket on {addr}: {source}")]
    Bind { addr: SocketAddrV4, source: std::io::Error },
    #[error("cannot save the DHT's nodes to {path}: {source}")]
    Save { path: PathBuf, source: std::io::Error },
}

/// What the node stores for others, bounded so that the whole store stays within a few MiB
/// (an entry costs some 100 bytes with the LRU's bookkeeping, an item up to 1 KiB): peers
/// for 500 torrents, 100 each (libtorrent keeps 2000 and 500, but answers with at most
/// 10-100 of them anyway), and 100 BEP 44 items of each kind.
const STORED_INFO_HASHES: usize = 500;
const STORED_PEERS_PER_INFO_HASH: usize = 100;
const STORED_ITEMS: usize = 100;

/// Nodes kept in the state file at most (a full routing table holds a few hundred).
const MAX_SAVED_NODES: usize = 512;
/// A state file larger than this is not ours: it is ignored.
const MAX_STATE_FILE: u64 = 64 * 1024;

/// The session's DHT node.
#[derive(Clone)]
pub struct Dht {
    node: mainline::async_dht::AsyncDht,
    local_addr: SocketAddrV4,
    state_file: Option<PathBuf>,
    /// The routing table's size as last counted (see [`Dht::node_count`]).
    nodes: Arc<AtomicUsize>,
}

/// How often the routing table is saved besides at exit.
const SAVE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How often the routing table's size is counted for progress displays.
const NODE_COUNT_INTERVAL: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Dht {
    /// Starts the node: it joins through the nodes saved last time and the bootstrap nodes
    /// (the well-known routers unless the config names others). A name that does not
    /// resolve is skipped (the node's thread resolves them).
    pub async fn start(config: DhtConfig) -> Result<Dht, DhtError> {
        let saved = config.state_file.as_deref().map(load_nodes).unwrap_or_default();
        let mut builder = Node::builder();
        builder.bind_address(*config.bind.ip()).port(config.bind.port());
        builder.server_settings(mainline::ServerSettings {
            filter: Box::new(source_limit::SourceLimit::default()),
            max_info_hashes: STORED_INFO_HASHES,
            max_peers_per_info_hash: STORED_PEERS_PER_INFO_HASH,
            // BEP 44 items: stored for others, never used by us.
            max_immutable_values: STORED_ITEMS,
            max_mutable_values: STORED_ITEMS,
        });
        if config.server_mode {
            builder.server_mode();
        }
        match &config.bootstrap {
            Some(nodes) => {
                let mut all: Vec<String> = saved;
                all.extend(nodes.iter().cloned());
                builder.bootstrap(&all);
            }
            None => {
                builder.extra_bootstrap(&saved);
            }
        }
        let bind = config.bind;
        // Building resolves the bootstrap names: off the runtime's threads.
        let node = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| DhtError::Bind { addr: bind, source: std::io::Error::other(e) })?
            .map_err(|source| DhtError::Bind { addr: bind, source })?
            .as_async();
        let local_addr = node.info().await.local_addr();
        tracing::info!(%local_addr, "DHT node started");
        let nodes = Arc::new(AtomicUsize::new(0));
        let (counted, counter) = (Arc::downgrade(&nodes), node.clone());
        let state_file = config.state_file.clone();
        tokio::spawn(async move {
            let mut last_saved = tokio::time::Instant::now();
            // Until the last handle of the session's node is gone.
            while let Some(nodes) = counted.upgrade() {
                let known = counter.to_bootstrap().await;
                nodes.store(known.len(), Ordering::Relaxed);
                drop(nodes);
                // Saved now and then too, so that a killed process loses little.
                if let Some(path) = state_file.as_deref() {
                    if last_saved.elapsed() >= SAVE_INTERVAL {
                        last_saved = tokio::time::Instant::now();
                        if let Err(e) = save_nodes(path, known) {
                            tracing::debug!("{e}");
                        }
                    }
                }
                tokio::time::sleep(NODE_COUNT_INTERVAL).await;
            }
        });
        Ok(Dht { node, local_addr, state_file: config.state_file, nodes })
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    /// Nodes in the routing table, as counted at most a couple of seconds ago.
    pub fn node_count(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Looks `info_hash` up, handing each batch of peers to `deliver` as the nodes that hold
    /// them answer, until the lookup ends or `deliver` says stop (false). Returns how many
    /// peers it found.
    pub async fn get_peers(
        &self,
        info_hash: InfoHash,
        mut deliver: impl FnMut(Vec<SocketAddr>) -> bool,
    ) -> usize {
        let mut stream = self.node.get_peers(id(info_hash));
        let mut found = 0;
        while let Some(batch) = stream.next().await {
            found += batch.len();
            if !deliver(batch.into_iter().map(SocketAddr::V4).collect()) {
                break;
            }
        }
        found
    }

    /// Tells the nodes closest to `info_hash` that we have it, reachable on `port` (TCP).
    pub async fn announce(&self, info_hash: InfoHash, port: u16) -> bool {
        match self.node.announce_peer(id(info_hash), Some(port)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(info_hash = %info_hash.to_hex(), "DHT announce failed: {e}");
                false
            }
        }
    }

    /// Writes the routing table's nodes to the state file (atomically: a crash leaves the
    /// old file or the new one), so the next start does not need the routers.
    pub async fn save(&self) -> Result<(), DhtError> {
        let Some(path) = &self.state_file else { return Ok(()) };
        save_nodes(path, self.node.to_bootstrap().await)
    }
}

/// Writes the routing table's nodes to `path` (atomically: a crash leaves the old file or the
/// new one).
fn save_nodes(path: &Path, mut nodes: Vec<String>) -> Result<(), DhtError> {
    nodes.truncate(MAX_SAVED_NODES);
    if nodes.is_empty() {
        // Nothing learnt this run: keep what the last one saved.
        return Ok(());
    }
    let text = serde_json::json!({ "nodes": nodes }).to_string();
    write_atomically(path, text.as_bytes())
        .map_err(|source| DhtError::Save { path: path.to_owned(), source })
}

fn id(info_hash: InfoHash) -> Id {
    Id::from(info_hash.0)
}

/// The nodes a state file lists; nothing when it is missing, too large or not ours.
fn load_nodes(path: &Path) -> Vec<String> {
    let read = || -> Option<Vec<String>> {
        let value: serde_json::Value = crate::resume::read_record(path, MAX_STATE_FILE)?;
        let nodes = value.get("nodes")?.as_array()?;
        Some(
            nodes
                .iter()
                .filter_map(|n| n.as_str())
                .filter(|n| n.parse::<SocketAddrV4>().is_ok())
                .take(MAX_SAVED_NODES)
                .map(str::to_owned)
                .collect(),
        )
    };
    read().unwrap_or_default()
}

/// When a torrent asks the DHT again: soon while it finds nobody (a new torrent's first
/// peers may announce any moment), then every 15 minutes, as libtorrent and Transmission do.
pub(crate) fn next_lookup(found: usize, previous: Duration) -> Duration {
    const FIRST_RETRY: Duration = Duration::from_secs(10);
    const INTERVAL: Duration = Duration::from_secs(15 * 60);
    if found > 0 {
        INTERVAL
    } else {
        (previous * 2).clamp(FIRST_RETRY, INTERVAL)
    }
}

/// A torrent's lookups and announces, running until dropped (or until `deliver` says stop).
pub(crate) struct Lookups(tokio::task::AbortHandle);

impl Lookups {
    /// Starts them: peers found go to `deliver`; `port` is the TCP port announced (0 to look
    /// up only: nothing listens for the peers we would bring), read at each announce.
    pub(crate) fn start(
        dht: Dht,
        info_hash: InfoHash,
        port: AnnouncedPort,
        mut deliver: impl FnMut(Vec<SocketAddr>) -> bool + Send + 'static,
    ) -> Lookups {
        let task = tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            let mut open = true;
            while open {
                let found = dht
                    .get_peers(info_hash, |peers| {
                        open = deliver(peers);
                        open
                    })
                    .await;
                let port = port.get();
                let announced = open && port != 0 && dht.announce(info_hash, port).await;
                tracing::debug!(info_hash = %info_hash.to_hex(), found, announced, "DHT lookup");
                wait = next_lookup(found, wait);
                tokio::time::sleep(wait).await;
            }
        });
        Lookups(task.abort_handle())
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_back_off_while_nobody_is_found_then_keep_the_usual_interval() {
        let mut wait = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..9 {
            wait = next_lookup(0, wait);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(next_lookup(3, Duration::from_secs(10)), Duration::from_secs(900));
    }

    #[test]
    fn the_state_file_round_trips_and_bad_files_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("dht.json");
        assert!(load_nodes(&path).is_empty());
        let text =
            serde_json::json!({ "nodes": ["127.0.0.1:6881", "not a node", 7, "10.0.0.2:1"] });
        write_atomically(&path, text.to_string().as_bytes()).unwrap();
        assert_eq!(load_nodes(&path), ["127.0.0.1:6881", "10.0.0.2:1"]);
        std::fs::write(&path, b"\xff garbage").unwrap();
        assert!(load_nodes(&path).is_empty());
        std::fs::write(&path, vec![b' '; MAX_STATE_FILE as usize + 1]).unwrap();
        assert!(load_nodes(&path).is_empty());
    }
}
