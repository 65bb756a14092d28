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

/// Packets handled in a row before yielding to other tasks.
const BATCH: usize = 256;

pub(crate) async fn run(state: Arc<State>, socket: UdpSocket, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = socket.readable() => if r.is_err() { continue },
        }
        for _ in 0..BATCH {
            let (n, from) = match socket.try_recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; they concern nobody now.
                Err(_) => continue,
            };
            let Some(reply) = handle(&state, &buf[..n], from) else { continue };
            match socket.try_send_to(&reply, from) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100),
                        socket.send_to(&reply, from),
                    )
                    .await;
                }
                Err(_) => {}
            }
        }
        tokio::task::yield_now().await;
    }
}

fn handle(state: &State, packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let c = &state.counters;
    let now = u64::from(state.now());
    let ip = from.ip().to_canonical();
    let client = SocketAddr::new(ip, from.port());
    let request = match decode_request(packet) {
        Ok(r) => r,
        Err(e) => {
            Counters::bump(&c.udp_errors);
            // Answer only what looks like a request, so we never reflect to a forged source
            // more than it sent.
            let tid = packet.get(12..16)?;
            let tid = u32::from_be_bytes([tid[0], tid[1], tid[2], tid[3]]);
            return Some(encode_error(tid, &e.to_string()));
        }
    };
    if !state.rate_ok(ip) {
        return None;
    }
    match request {
        Request::Connect { transaction_id } => {
            Counters::bump(&c.udp_connects);
            Some(
                encode_connect_response(transaction_id, state.conn_ids.issue(&client, now))
                    .to_vec(),
            )
        }
        Request::Announce(p) => {
            Counters::bump(&c.udp_announces);
            if !state.conn_ids.check(p.connection_id, &client, now) {
                Counters::bump(&c.udp_errors);
                return Some(encode_error(
                    p.transaction_id,
                    "connection id expired, connect again",
                ));
            }
            let r = &p.request;
            if !state.allowed(&r.info_hash) {
                Counters::bump(&c.udp_errors);
                return Some(encode_error(p.transaction_id, "torrent not allowed on this tracker"));
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
                Err(e) => {
                    Counters::bump(&c.udp_errors);
                    return Some(encode_error(p.transaction_id, &e.to_string()));
                }
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
            Some(encode_announce_response(p.transaction_id, &resp, family))
        }
        Request::Scrape { connection_id, transaction_id, info_hashes } => {
            Counters::bump(&c.udp_scrapes);
            if !state.conn_ids.check(connection_id, &client, now) {
                Counters::bump(&c.udp_errors);
                return Some(encode_error(transaction_id, "connection id expired, connect again"));
            }
            let stats: Vec<_> = info_hashes.iter().map(|h| state.store.scrape_classic(h)).collect();
            Some(encode_scrape_response(transaction_id, &stats))
        }
    }
}
