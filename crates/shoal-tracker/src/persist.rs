//! Optional saving of classic swarms across restarts, as JSON written atomically (temp file,
//! then rename). WebSocket peers are not saved: a peer lives on its socket.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shoal_proto::{InfoHash, PeerId};

use crate::state::State;

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a saved swarm file: {message}")]
    Format { path: String, message: String },
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    swarms: Vec<SavedSwarm>,
}

#[derive(Serialize, Deserialize)]
struct SavedSwarm {
    info_hash: String,
    completed: u32,
    peers: Vec<SavedPeer>,
}

#[derive(Serialize, Deserialize)]
struct SavedPeer {
    addr: SocketAddr,
    peer_id: String,
    seeder: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io { path: path.display().to_string(), source }
}

/// Writes every classic swarm to `path`; returns how many peers were saved.
pub fn save(state: &State, path: &Path) -> Result<usize, PersistError> {
    let mut swarms = Vec::new();
    let mut n = 0;
    state.store.each_classic(|hash, swarm| {
        let peers: Vec<SavedPeer> = swarm
            .iter()
            .map(|(addr, e)| SavedPeer {
                addr: *addr,
                peer_id: InfoHash(e.value.0).to_hex(),
                seeder: e.seeder,
            })
            .collect();
        n += peers.len();
        swarms.push(SavedSwarm {
            info_hash: hash.to_hex(),
            completed: swarm.stats().completed,
            peers,
        });
    });
    let json = serde_json::to_vec(&Saved { version: VERSION, swarms }).map_err(|e| {
        PersistError::Format { path: path.display().to_string(), message: e.to_string() }
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(n)
}

/// Restores swarms saved by [`save`]; a missing file is an empty one. Restored peers must
/// re-announce within the peer timeout like everyone else.
pub fn load(state: &State, path: &Path) -> Result<usize, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    };
    let format =
        |message: String| PersistError::Format { path: path.display().to_string(), message };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    if saved.version != VERSION {
        return Err(format(format!("version {} (expected {VERSION})", saved.version)));
    }
    let now = state.now();
    let mut n = 0;
    for swarm in saved.swarms {
        let hash =
            InfoHash::from_hex(&swarm.info_hash).ok_or_else(|| format("bad info hash".into()))?;
        if !state.allowed(&hash) {
            continue;
        }
        for p in swarm.peers {
            let id = InfoHash::from_hex(&p.peer_id).ok_or_else(|| format("bad peer id".into()))?;
            state.store.restore_classic(hash, p.addr, PeerId(id.0), p.seeder, swarm.completed, now);
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use shoal_tracker_proto::{AnnounceEvent, ScrapeStats};

    #[test]
    fn swarms_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarms.json");
        let state = State::new(Config::default());
        let h = InfoHash([3; 20]);
        for (i, seeder) in [(1u8, true), (2, false)] {
            let addr = SocketAddr::from(([10, 0, 0, i], 6881));
            state
                .store
                .announce_classic(
                    h,
                    addr,
                    PeerId([i; 20]),
                    seeder,
                    AnnounceEvent::Completed,
                    0,
                    0,
                    |_| true,
                )
                .unwrap();
        }
        assert_eq!(save(&state, &path).unwrap(), 2);
        let restarted = State::new(Config::default());
        assert_eq!(load(&restarted, &path).unwrap(), 2);
        assert_eq!(
            restarted.store.scrape_classic(&h),
            ScrapeStats { seeders: 1, completed: 2, leechers: 1 }
        );
        assert_eq!(load(&restarted, &dir.path().join("absent.json")).unwrap(), 0);
        std::fs::write(&path, b"{nope").unwrap();
        assert!(load(&restarted, &path).is_err());
    }
}
