//! The WebSocket listener: WebTorrent signalling. One task per connection, which reads frames,
//! answers announces and scrapes, forwards offers to other peers' outboxes and relays answers.
//! Per connection it keeps a few hundred bytes: no read buffer while idle (see
//! [`crate::stream::read_some`]), an outbox that allocates only when something is queued, and
//! the list of torrents it announced (to leave them all when the socket closes).

mod conn;
pub mod frame;
pub mod handshake;
mod outbox;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use outbox::Outbox;

use crate::state::State;
use crate::stats::Counters;
use crate::stream::{self, HandedIo, Stream};

/// Accepts connections until `shutdown` flips.
pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((tcp, peer)) = stream::accept(&listener, &mut shutdown, "ws").await {
        let c = &state.counters;
        if c.ws_connections_open.load(Relaxed) >= u64::from(state.config.max_ws_connections) {
            Counters::bump(&c.ws_connections_refused);
            continue; // dropping the socket closes it
        }
        // Behind a trusted proxy every connection comes from the proxy: limit after the
        // handshake instead, by the forwarded address.
        if !state.config.trust_x_forwarded_for && !state.rate_ok(peer.ip().to_canonical()) {
            continue;
        }
        if state.config.ws_send_buffer > 0 {
            let size = state.config.ws_send_buffer as usize;
            if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(size) {
                tracing::debug!("ws send buffer of {size} bytes refused: {e}");
            }
        }
        Counters::bump(&c.ws_connections_accepted);
        c.ws_connections_open.fetch_add(1, Relaxed);
        tokio::spawn(conn::serve(state.clone(), tcp, peer, tls.clone(), shutdown.clone()));
    }
}

/// Serves WebSocket connections that another HTTP server accepted and upgraded, so the
/// tracker can share that server's port (`shoal serve` answers `/announce` on the app's). The
/// same limits apply as on the tracker's own listener. Get one from
/// [`crate::RunningTracker::ws_handoff`].
#[derive(Clone)]
pub struct WsHandoff {
    pub(crate) state: Arc<State>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A connection the tracker has room for; dropping it unused gives the room back.
pub struct WsAdmission {
    guard: conn::OpenGuard,
    handoff: WsHandoff,
}

impl WsHandoff {
    /// Room for a connection from `peer`, asked before answering its upgrade so that a refused
    /// one gets an HTTP error instead of a socket closed at once. `None` when the tracker is at
    /// `max_ws_connections` or `peer` is over its request rate.
    pub fn admit(&self, peer: SocketAddr) -> Option<WsAdmission> {
        let c = &self.state.counters;
        if c.ws_connections_open.load(Relaxed) >= u64::from(self.state.config.max_ws_connections) {
            Counters::bump(&c.ws_connections_refused);
            return None;
        }
        if !self.state.rate_ok(peer.ip().to_canonical()) {
            return None;
        }
        Counters::bump(&c.ws_connections_accepted);
        c.ws_connections_open.fetch_add(1, Relaxed);
        Some(WsAdmission { guard: conn::OpenGuard(self.state.clone()), handoff: self.clone() })
    }
}

impl WsAdmission {
    /// Serves `io`, whose `101 Switching Protocols` the caller has sent, until it closes.
    pub async fn serve(self, io: impl HandedIo + 'static) {
        let WsAdmission { guard, handoff } = self;
        let stream = Stream::Handed(Box::new(io));
        conn::serve_open(guard, handoff.state, stream, Vec::new(), handoff.shutdown).await;
    }
}
