//! A deterministic, virtual-time simulation driver for Shoal's sans-IO torrent core.
//!
//! Many [`shoal_proto::torrent::Torrent`] cores ("nodes", each at its own 10.0.x.y:6881) run on
//! an in-memory network with latency and per-node upload/download rates, memory storage and
//! real SHA-1 piece checks, driven exactly as the native driver drives one core. A seed fixes
//! everything, so a scenario replays bit for bit; virtual time makes a swarm's hour take
//! seconds. Nodes can play the torrent like a media player ([`PlayerConfig`], [`Sim::play`],
//! [`Sim::seek`]), which exercises the core's streaming. See the crate's README for what is and
//! is not modelled.
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_sim::{NodeConfig, Sim, TestTorrent};
//!
//! let torrent = TestTorrent::random(1, 1 << 20, 64 * 1024).unwrap();
//! let mut sim = Sim::new(42, torrent);
//! let seeder = sim.add_node(NodeConfig::seeder().upload(1 << 20));
//! let leecher = sim.add_node(NodeConfig::leecher());
//! sim.introduce(leecher, seeder);
//! let done = sim.run_until(|s| s.node(leecher).is_complete(), Duration::from_secs(60)).unwrap();
//! println!("done after {:?}", done.since_epoch());
//! ```

pub mod crowd;
pub mod fixture;
pub mod link;
pub mod node;
pub mod player;
pub mod rng;
pub mod sim;
pub mod store;
pub mod webseed;

pub use fixture::TestTorrent;
pub use link::ConnId;
pub use node::{Behaviour, InitialData, Node, NodeConfig, NodeId, NodeLog, NodeState};
pub use player::{PlayerConfig, PlayerState, PlayerStats, Wait};
pub use sim::{kind, node_addr, NetConfig, Sim, SimConfig, SimStats, Timeout, TimeoutReason};
pub use store::{PieceStore, Verify};
pub use webseed::WebSeedConfig;
