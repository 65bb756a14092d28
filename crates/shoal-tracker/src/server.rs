//! Starting and stopping the whole tracker: binds every configured listener, runs the
//! periodic sweep (and save), and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::persist::{self, PersistError};
use crate::state::State;
use crate::stats::StatsSnapshot;
use crate::tls::{self, TlsError};
use crate::ws::WsHandoff;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// A running tracker. Dropping it without [`RunningTracker::shutdown`] stops the listeners
/// too (their tasks see the shutdown channel close) but saves nothing.
pub struct RunningTracker {
    pub http_addr: Option<SocketAddr>,
    pub udp_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds the listeners of `config` and starts serving.
pub async fn start(config: Config) -> Result<RunningTracker, TrackerError> {
    config.validate()?;
    let acceptor = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let state = Arc::new(State::new(config));
    if let Some(path) = &state.config.persist_file {
        let n = persist::load(&state, path)?;
        tracing::info!("restored {n} peers from {}", path.display());
    }
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let bind = |what, addr| move |source| TrackerError::Bind { what, addr, source };

    let mut http_addr = None;
    if let Some(addr) = state.config.http {
        let listener = TcpListener::bind(addr).await.map_err(bind("http", addr))?;
        http_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(crate::http::run(
            state.clone(),
            listener,
            acceptor.clone(),
            rx.clone(),
        )));
    }
    let mut udp_addr = None;
    if let Some(addr) = state.config.udp {
        let socket = UdpSocket::bind(addr).await.map_err(bind("udp", addr))?;
        udp_addr = socket.local_addr().ok();
        tasks.push(tokio::spawn(crate::udp::run(state.clone(), socket, rx.clone())));
    }
    let mut ws_addr = None;
    if let Some(addr) = state.config.ws {
        let listener = TcpListener::bind(addr).await.map_err(bind("ws", addr))?;
        ws_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(crate::ws::run(state.clone(), listener, acceptor, rx.clone())));
    }
    tasks.push(tokio::spawn(housekeeping(state.clone(), rx)));
    Ok(RunningTracker { http_addr, udp_addr, ws_addr, state, shutdown, tasks })
}

/// Sweeps expired peers, and saves swarms when configured.
async fn housekeeping(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let sweep = Duration::from_secs(u64::from(state.config.sweep_interval_secs.max(1)));
    let save_every = u64::from(state.config.persist_interval_secs.max(1));
    let mut last_save = state.now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(sweep) => {}
        }
        let gone = state.store.expire(state.expiry_deadline());
        if gone > 0 {
            tracing::debug!("expired {gone} peers");
        }
        if let Some(path) = &state.config.persist_file {
            if u64::from(state.now() - last_save) >= save_every {
                last_save = state.now();
                let (state, path) = (state.clone(), path.clone());
                let saved = tokio::task::spawn_blocking(move || persist::save(&state, &path)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!("saving swarms failed: {e}");
                }
            }
        }
    }
}

impl RunningTracker {
    pub fn stats(&self) -> StatsSnapshot {
        self.state.snapshot()
    }

    /// For serving WebSocket announces on another server's port (see [`WsHandoff`]); works
    /// whether or not the tracker has a `ws` listener of its own.
    pub fn ws_handoff(&self) -> WsHandoff {
        WsHandoff { state: self.state.clone(), shutdown: self.shutdown.subscribe() }
    }

    /// Stops accepting, closes WebSocket connections with "going away" (waiting up to five
    /// seconds for them), finishes HTTP requests in flight, then saves swarms if configured.
    pub async fn shutdown(self) -> Result<(), TrackerError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.state.counters.ws_connections_open.load(Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(path) = &self.state.config.persist_file {
            let n = persist::save(&self.state, path)?;
            tracing::info!("saved {n} peers to {}", path.display());
        }
        Ok(())
    }
}
