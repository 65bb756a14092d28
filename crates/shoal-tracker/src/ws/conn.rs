//! One WebSocket connection, from the TLS and HTTP handshakes to the close.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::ws::{
    self as wire, encode_announce_response, encode_answer, encode_failure, encode_offer,
    encode_scrape_response, WsAction, WsAnnounce, WsAnswer, WsRequest,
};
use shoal_tracker_proto::AnnounceEvent;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::frame::{self, Header};
use super::handshake::{self, Head};
use super::outbox::Outbox;
use crate::limiter::Bucket;
use crate::state::State;
use crate::stats::Counters;
use crate::stream::{read_some, Stream};

/// Above this the read buffer is given back as soon as it is empty.
const KEEP_BUFFER: usize = 4096;

/// Why a connection ends: the close frame to send, if any.
struct Close(u16, &'static str);

/// Decrements the open-connection gauge however the task ends.
pub(crate) struct OpenGuard(pub(crate) Arc<State>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.ws_connections_open.fetch_sub(1, Relaxed);
    }
}

pub(crate) async fn serve(
    state: Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let guard = OpenGuard(state.clone());
    let deadline = state.config.handshake_timeout();
    let mut inbuf = Vec::new();
    let opened = tokio::time::timeout(deadline, open(&state, tcp, peer, tls, &mut inbuf)).await;
    let Ok(Some(stream)) = opened else { return };
    serve_open(guard, state, stream, inbuf, shutdown).await;
}

/// A connection whose WebSocket handshake is done: its frames until it closes. `inbuf` holds
/// what arrived after the handshake.
pub(crate) async fn serve_open(
    _guard: OpenGuard,
    state: Arc<State>,
    stream: Stream,
    inbuf: Vec<u8>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn = Conn {
        outbox: Outbox::new(state.config.ws_outbox_len),
        bucket: Bucket::full(state.config.ws_message_burst, 0),
        epoch: Instant::now(),
        torrents: Vec::new(),
        frag: Vec::new(),
        frag_opcode: 0,
        out: Vec::new(),
        state,
        stream,
    };
    conn.run(inbuf, shutdown).await;
    conn.leave_all();
}

/// TLS, then the upgrade. `None` when the connection was refused or answered as plain HTTP.
async fn open(
    state: &Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    inbuf: &mut Vec<u8>,
) -> Option<Stream> {
    let mut stream = crate::stream::start(tcp, tls).await?;
    let (head, len) = loop {
        if read_some(&mut stream, inbuf).await.ok()? == 0 {
            return None;
        }
        match handshake::parse(inbuf) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if inbuf.len() < handshake::MAX_HEAD_LEN => continue,
            _ => {
                let reply =
                    handshake::plain_response("400 Bad Request", "text/plain", "bad request\n");
                let _ = stream.write_all(reply.as_bytes()).await;
                return None;
            }
        }
    };
    inbuf.drain(..len);
    let reply = match head {
        Head::Upgrade { accept, forwarded_for } => {
            if state.config.trust_x_forwarded_for
                && !state.rate_ok(state.client_ip(peer, forwarded_for.as_deref()))
            {
                handshake::plain_response("429 Too Many Requests", "text/plain", "slow down\n")
            } else {
                stream.write_all(handshake::switching_protocols(&accept).as_bytes()).await.ok()?;
                stream.flush().await.ok()?;
                return Some(stream);
            }
        }
        Head::Get { path } => match path.split('?').next() {
            Some("/stats") => {
                handshake::plain_response("200 OK", "application/json", &state.snapshot().to_json())
            }
            Some("/metrics") => handshake::plain_response(
                "200 OK",
                "text/plain; version=0.0.4",
                &state.snapshot().to_prometheus(),
            ),
            _ => handshake::plain_response(
                "426 Upgrade Required",
                "text/plain",
                "this is a WebSocket tracker\n",
            ),
        },
        Head::Refuse(status) => handshake::plain_response(status, "text/plain", "refused\n"),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
    None
}

struct Conn {
    state: Arc<State>,
    stream: Stream,
    outbox: Arc<Outbox>,
    bucket: Bucket,
    epoch: Instant,
    /// The (torrent, peer id) pairs announced on this socket.
    torrents: Vec<(InfoHash, PeerId)>,
    /// A fragmented message being reassembled.
    frag: Vec<u8>,
    frag_opcode: u8,
    /// Frames to write once the current read is handled.
    out: Vec<u8>,
}

impl Conn {
    async fn run(&mut self, mut inbuf: Vec<u8>, mut shutdown: watch::Receiver<bool>) {
        let idle = self.state.config.idle_timeout();
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        let outbox = self.outbox.clone();
        let mut pending = !inbuf.is_empty();
        loop {
            if pending {
                pending = false;
                let result = self.handle_input(&mut inbuf);
                if inbuf.is_empty() && inbuf.capacity() > KEEP_BUFFER {
                    inbuf = Vec::new();
                }
                if let Err(Close(code, reason)) = result {
                    frame::encode_close(&mut self.out, code, reason, None);
                    let _ = self.flush().await;
                    return;
                }
                if self.flush().await.is_err() {
                    return;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    frame::encode_close(&mut self.out, frame::CLOSE_GOING_AWAY, "tracker shutting down", None);
                    let _ = self.flush().await;
                    return;
                }
                _ = outbox.wait() => {
                    for msg in outbox.take_all() {
                        frame::encode_frame(&mut self.out, frame::OP_TEXT, msg.as_bytes(), None);
                    }
                    if self.flush().await.is_err() {
                        return;
                    }
                }
                read = read_some(&mut self.stream, &mut inbuf) => {
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            pending = true;
                            timer.as_mut().reset(Instant::now() + idle);
                        }
                    }
                }
                _ = &mut timer => {
                    frame::encode_close(&mut self.out, frame::CLOSE_NORMAL, "idle", None);
                    let _ = self.flush().await;
                    return;
                }
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // `flush` too: over TLS, `write_all` can return with the last records still inside
        // rustls (when the socket would block), and they would wait for the next write.
        let (stream, out) = (&mut self.stream, &self.out);
        let write = async move {
            stream.write_all(out).await?;
            stream.flush().await
        };
        let result = tokio::time::timeout(Duration::from_secs(30), write).await;
        self.out.clear();
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Handles every complete frame in `inbuf`, leaving a partial one there.
    fn handle_input(&mut self, inbuf: &mut Vec<u8>) -> Result<(), Close> {
        let max = self.state.config.max_message_len;
        let mut at = 0;
        let result = loop {
            let header = match frame::parse_header(&inbuf[at..], true, max) {
                Ok(Some(h)) => h,
                Ok(None) => break Ok(()),
                Err(e) => {
                    Counters::bump(&self.state.counters.ws_errors);
                    break Err(Close(e.close_code(), "bad frame"));
                }
            };
            let end = at + header.header_len + header.payload_len;
            if inbuf.len() < end {
                break Ok(());
            }
            let payload = &mut inbuf[at + header.header_len..end];
            if let Some(mask) = header.mask {
                frame::apply_mask(payload, mask);
            }
            at = end;
            if let Err(close) = self.handle_frame(header, payload_range(inbuf, end, header)) {
                break Err(close);
            }
        };
        inbuf.drain(..at);
        result
    }

    fn handle_frame(&mut self, header: Header, payload: &[u8]) -> Result<(), Close> {
        match header.opcode {
            frame::OP_PING => {
                frame::encode_frame(&mut self.out, frame::OP_PONG, payload, None);
                Ok(())
            }
            frame::OP_PONG => Ok(()),
            frame::OP_CLOSE => Err(Close(frame::CLOSE_NORMAL, "")),
            frame::OP_CONTINUATION => {
                if self.frag_opcode == 0 {
                    return Err(Close(frame::CLOSE_PROTOCOL_ERROR, "continuation without start"));
                }
                if self.frag.len() + payload.len() > self.state.config.max_message_len {
                    return Err(Close(frame::CLOSE_TOO_BIG, "message too big"));
                }
                self.frag.extend_from_slice(payload);
                if header.fin {
                    let message = std::mem::take(&mut self.frag);
                    self.frag_opcode = 0;
                    self.message(&message)?;
                }
                Ok(())
            }
            _ => {
                if self.frag_opcode != 0 {
                    return Err(Close(
                        frame::CLOSE_PROTOCOL_ERROR,
                        "new message inside a fragmented one",
                    ));
                }
                if header.fin {
                    self.message(payload)
                } else {
                    self.frag_opcode = header.opcode;
                    self.frag.extend_from_slice(payload);
                    Ok(())
                }
            }
        }
    }

    /// One complete text (or binary) message.
    fn message(&mut self, text: &[u8]) -> Result<(), Close> {
        let (rate, burst) =
            (self.state.config.ws_messages_per_sec, self.state.config.ws_message_burst);
        if rate > 0 && !self.bucket.take(rate, burst, self.epoch.elapsed().as_millis() as u64) {
            Counters::bump(&self.state.counters.rate_limited);
            return Err(Close(frame::CLOSE_POLICY, "too many messages"));
        }
        let Ok(text) = std::str::from_utf8(text) else {
            Counters::bump(&self.state.counters.ws_errors);
            self.send(&encode_failure(None, None, "message is not UTF-8"));
            return Err(Close(frame::CLOSE_INVALID_DATA, "not UTF-8"));
        };
        match wire::decode_request_str(text) {
            Ok(WsRequest::Announce(a)) => self.announce(a),
            Ok(WsRequest::Answer(a)) => self.answer(a),
            Ok(WsRequest::Scrape { info_hashes }) => self.scrape(&info_hashes),
            Err(e) => {
                Counters::bump(&self.state.counters.ws_errors);
                self.send(&encode_failure(None, None, &e.to_string()));
            }
        }
        Ok(())
    }

    fn send(&mut self, json: &str) {
        frame::encode_frame(&mut self.out, frame::OP_TEXT, json.as_bytes(), None);
    }

    fn fail(&mut self, action: WsAction, hash: &InfoHash, reason: &str) {
        Counters::bump(&self.state.counters.ws_errors);
        self.send(&encode_failure(Some(action), Some(hash), reason));
    }

    fn announce(&mut self, a: WsAnnounce) {
        let state = self.state.clone();
        Counters::bump(&state.counters.ws_announces);
        if !state.allowed(&a.info_hash) {
            return self.fail(
                WsAction::Announce,
                &a.info_hash,
                "torrent not allowed on this tracker",
            );
        }
        let key = (a.info_hash, a.peer_id);
        let known = self.torrents.iter().position(|t| *t == key);
        if a.event != AnnounceEvent::Stopped && known.is_none() {
            if self.torrents.len() >= state.config.ws_max_torrents_per_connection as usize {
                return self.fail(
                    WsAction::Announce,
                    &a.info_hash,
                    "too many torrents on one connection",
                );
            }
            self.torrents.push(key);
        }
        let n_offers = a.offers.len().min(state.config.max_offers_per_announce as usize);
        let result = state.store.announce_ws(
            a.info_hash,
            a.peer_id,
            &self.outbox,
            a.is_seeder(),
            a.event,
            n_offers,
            state.now(),
        );
        let (stats, targets) = match result {
            Ok(x) => x,
            Err(e) => {
                self.torrents.retain(|t| *t != key);
                return self.fail(WsAction::Announce, &a.info_hash, &e.to_string());
            }
        };
        if a.event == AnnounceEvent::Stopped {
            self.torrents.retain(|t| *t != key);
        }
        self.send(&encode_announce_response(
            &a.info_hash,
            state.config.ws_interval_secs,
            stats.seeders,
            stats.leechers,
        ));
        for (target, offer) in targets.iter().zip(&a.offers) {
            let msg = encode_offer(&a.info_hash, &a.peer_id, &offer.offer_id, &offer.offer);
            let counter = if target.push(msg) {
                &state.counters.ws_offers_relayed
            } else {
                &state.counters.ws_relays_dropped
            };
            Counters::bump(counter);
        }
    }

    fn answer(&mut self, a: WsAnswer) {
        let state = self.state.clone();
        // Only a peer that announced on this socket may answer in its name.
        if !self.torrents.contains(&(a.info_hash, a.peer_id)) {
            return self.fail(
                WsAction::Announce,
                &a.info_hash,
                "answer from a peer that has not announced",
            );
        }
        let delivered = state.store.ws_peer(&a.info_hash, &a.to_peer_id).is_some_and(|to| {
            to.push(encode_answer(&a.info_hash, &a.peer_id, &a.offer_id, &a.answer))
        });
        let counter = if delivered {
            &state.counters.ws_answers_relayed
        } else {
            &state.counters.ws_relays_dropped
        };
        // Nothing goes back to the answerer, as with bittorrent-tracker.
        Counters::bump(counter);
    }

    fn scrape(&mut self, hashes: &[InfoHash]) {
        Counters::bump(&self.state.counters.ws_scrapes);
        let files: Vec<_> = hashes.iter().map(|h| (*h, self.state.store.scrape_ws(h))).collect();
        let json = encode_scrape_response(&files, Some(self.state.config.ws_interval_secs));
        self.send(&json);
    }

    /// The socket closed: its peers leave every torrent (a `stopped` for each).
    fn leave_all(&mut self) {
        self.outbox.close();
        for (hash, peer_id) in self.torrents.drain(..) {
            self.state.store.remove_ws(&hash, &peer_id, &self.outbox);
        }
    }
}

/// The unmasked payload of the frame that ends at `end`.
fn payload_range(buf: &[u8], end: usize, header: Header) -> &[u8] {
    &buf[end - header.payload_len..end]
}
