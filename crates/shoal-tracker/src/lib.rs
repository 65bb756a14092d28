//! Shoal's tracker server: HTTP, UDP (BEP 15) and WebSocket (WebTorrent signalling) listeners
//! sharing one swarm store, in one process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_tracker::TrackerError> {
//! let config = shoal_tracker::Config {
//!     ws: Some("0.0.0.0:8000".parse().unwrap()),
//!     udp: Some("0.0.0.0:8000".parse().unwrap()),
//!     ..Default::default()
//! };
//! let tracker = shoal_tracker::start(config).await?;
//! tokio::signal::ctrl_c().await.ok();
//! tracker.shutdown().await
//! # }
//! ```
//!
//! Where things are: [`store`] (who is in which swarm, random peer choice, expiry), [`ws`]
//! (WebSocket connections: framing, handshake, offer/answer relay), `http` and `udp` (the
//! classic listeners), [`conn_id`] (stateless UDP connection ids), [`limiter`] (per-IP and
//! per-connection rate limits), [`stats`] (JSON and Prometheus), [`persist`] (optional save and
//! restore), `server` (start and graceful shutdown).

pub mod config;
pub mod conn_id;
mod http;
pub mod limiter;
pub mod persist;
mod server;
mod state;
pub mod stats;
pub mod store;
mod stream;
mod tls;
mod udp;
mod udp_batch;
pub mod ws;

pub use config::{Config, ConfigError};
pub use server::{start, RunningTracker, TrackerError};
pub use stats::StatsSnapshot;
pub use tls::{acceptor as tls_acceptor, TlsError};
