//! The WebSocket listener: WebTorrent signalling. One task per connection, which reads frames,
//! answers announces and scrapes, forwards offers to other peers' outboxes and relays answers.
//! Per connection it keeps a few hundred bytes: no read buffer while idle (see
//! [`crate::stream::read_some`]), an outbox that allocates only when something is queued, and
//! the list of torrents it announced (to leave them all when the socket closes).

mod conn;
pub mod frame;
pub mod handshake;
mod outbox;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use outbox::Outbox;

use crate::state::State;
use crate::stats::Counters;

/// Accepts connections until `shutdown` flips.
pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, most likely: let connections close before retrying.
                tracing::warn!("ws accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
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
        Counters::bump(&c.ws_connections_accepted);
        c.ws_connections_open.fetch_add(1, Relaxed);
        let _ = tcp.set_nodelay(true);
        tokio::spawn(conn::serve(state.clone(), tcp, peer, tls.clone(), shutdown.clone()));
    }
}
