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
use crate::stream;

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
