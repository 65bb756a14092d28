//! The UDP listener (BEP 15). Connection ids are stateless ([`crate::conn_id`]); each packet is
//! answered from the one it arrived in, with no per-client memory.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_tracker_proto::udp::{
    decode_request, encode_announce_response, encode_connect_response, encode_error,
    encode_scrape_response, AddressFamily, Request,
};
use shoal_tracker_proto::AnnounceResponse;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::state::State;
use crate::stats::Counters;
use crate::udp_batch::{Batch, BATCH};

/// Batches handled in a row before yielding to other tasks.
const ROUNDS: usize = 8;
/// Receive buffer asked of the kernel (which caps it at `net.core.rmem_max`). The default
/// (~200 KiB, ~2,000 small datagrams) overflows within milliseconds of a burst while the
/// thread is busy, and every dropped request costs the client a retry after 15 s.
const RECV_BUFFER: usize = 8 << 20;

pub(crate) async fn run(state: Arc<State>, socket: UdpSocket, mut shutdown: watch::Receiver<bool>) {
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!("cannot grow the UDP receive buffer: {e}");
    }
    let mut batch = Batch::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = socket.readable() => if r.is_err() { continue },
        }
        for _ in 0..ROUNDS {
            let n = match batch.recv(&socket) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; they concern nobody now.
                Err(_) => continue,
            };
            batch.answer_all(|packet, from, out| handle(&state, packet, from, out));
            send_replies(&socket, &mut batch).await;
            if n < BATCH {
                break; // the socket is drained
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Sends what `batch` queued. A full send buffer gets 100 ms to drain; what still does not
/// fit is dropped, as the network would (the client retries).
async fn send_replies(socket: &UdpSocket, batch: &mut Batch) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    while batch.replies_left() {
        match batch.send(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let ready = tokio::time::timeout_at(deadline, socket.writable()).await;
                if !matches!(ready, Ok(Ok(()))) {
                    break;
                }
            }
            // An unreachable or refused destination: skip that reply only.
            Err(_) => batch.skip_reply(),
        }
    }
    batch.clear_replies();
}

/// Appends the answer to `packet` to `out`; `false` when nothing is to be sent.
fn handle(state: &State, packet: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
    let c = &state.counters;
    let now = u64::from(state.now());
    let ip = from.ip().to_canonical();
    let client = SocketAddr::new(ip, from.port());
    let request = match decode_request(packet) {
        Ok(r) => r,
        Err(e) => {
            // Answer only what looks like a request, so we never reflect to a forged source
            // more than it sent.
            let Some(&[a, b, c, d]) = packet.get(12..16) else {
                Counters::bump(&state.counters.udp_errors);
                return false;
            };
            return error(state, out, u32::from_be_bytes([a, b, c, d]), &e.to_string());
        }
    };
    if !state.rate_ok(ip) {
        return false;
    }
    match request {
        Request::Connect { transaction_id } => {
            Counters::bump(&c.udp_connects);
            let id = state.conn_ids.issue(&client, now);
            out.extend_from_slice(&encode_connect_response(transaction_id, id));
        }
        Request::Announce(p) => {
            Counters::bump(&c.udp_announces);
            if !state.conn_ids.check(p.connection_id, &client, now) {
                return error(state, out, p.transaction_id, "connection id expired, connect again");
            }
            let r = &p.request;
            if !state.allowed(&r.info_hash) {
                return error(state, out, p.transaction_id, "torrent not allowed on this tracker");
            }
            let family = AddressFamily::of(&client);
            let answer = state.store.announce_classic(
                r.info_hash,
                SocketAddr::new(ip, r.port),
                r.peer_id,
                r.left == Some(0),
                r.event,
                state.config.numwant(r.num_want),
                state.now(),
                |a| AddressFamily::of(a) == family,
            );
            let answer = match answer {
                Ok(a) => a,
                Err(e) => return error(state, out, p.transaction_id, &e.to_string()),
            };
            let resp = AnnounceResponse {
                interval: Duration::from_secs(u64::from(state.config.interval_secs)),
                min_interval: None,
                peers: answer.peers.into_iter().map(|(a, _)| a).collect(),
                seeders: Some(answer.stats.seeders),
                leechers: Some(answer.stats.leechers),
                warning: None,
                tracker_id: None,
            };
            out.extend_from_slice(&encode_announce_response(p.transaction_id, &resp, family));
        }
        Request::Scrape { connection_id, transaction_id, info_hashes } => {
            Counters::bump(&c.udp_scrapes);
            if !state.conn_ids.check(connection_id, &client, now) {
                return error(state, out, transaction_id, "connection id expired, connect again");
            }
            let stats: Vec<_> = info_hashes.iter().map(|h| state.store.scrape_classic(h)).collect();
            out.extend_from_slice(&encode_scrape_response(transaction_id, &stats));
        }
    }
    true
}

/// Appends an error answer (and counts it).
fn error(state: &State, out: &mut Vec<u8>, transaction_id: u32, message: &str) -> bool {
    Counters::bump(&state.counters.udp_errors);
    out.extend_from_slice(&encode_error(transaction_id, message));
    true
}
