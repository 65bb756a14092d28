//! The HTTP listener: `/announce` and `/scrape` (BEP 3, 7, 23, 48), `/stats` (JSON) and
//! `/metrics` (Prometheus text). hyper serves HTTP/1.1 with keep-alive; at most
//! `max_http_connections` connections are open at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use shoal_tracker_proto::http::{
    encode_announce_response, encode_failure, encode_scrape_response, parse_announce_query,
    parse_scrape_query, PeerFormat,
};
use shoal_tracker_proto::{AnnounceResponse, ScrapeResponse};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::state::State;
use crate::stats::Counters;
use crate::stream;

pub(crate) async fn run(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((tcp, peer)) = stream::accept(&listener, &mut shutdown, "http").await {
        let c = &state.counters;
        if c.http_connections_open.load(Relaxed) >= u64::from(state.config.max_http_connections) {
            // Refused before any TLS or HTTP work: dropping the socket closes it, which is
            // the cheapest answer to a flood (a 503 would cost a write per refusal).
            Counters::bump(&c.http_connections_refused);
            continue;
        }
        Counters::bump(&c.http_connections_accepted);
        c.http_connections_open.fetch_add(1, Relaxed);
        let open = OpenGuard(state.clone());
        let state = state.clone();
        let tls = tls.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _open = open;
            let handshake = state.config.handshake_timeout();
            let Ok(Some(stream)) = tokio::time::timeout(handshake, stream::start(tcp, tls)).await
            else {
                return;
            };
            let svc_state = state.clone();
            let service = service_fn(move |req| {
                let response = handle(&svc_state, peer, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

/// Counts a connection as open for as long as its task lives, however the task ends.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.http_connections_open.fetch_sub(1, Relaxed);
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// A BEP 3 refusal: still 200, with `failure reason`, which is what clients display.
fn failure(state: &State, reason: &str) -> Response<Full<Bytes>> {
    Counters::bump(&state.counters.http_errors);
    reply(StatusCode::OK, "text/plain", encode_failure(reason))
}

fn handle(state: &State, peer: SocketAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("");
    let forwarded = req.headers().get("x-forwarded-for").map(|v| v.as_bytes());
    let ip = state.client_ip(peer, forwarded);
    match req.uri().path() {
        "/announce" => {
            Counters::bump(&state.counters.http_announces);
            if !state.rate_ok(ip) {
                return failure(state, "rate limited, slow down");
            }
            let announce = match parse_announce_query(query) {
                Ok(a) => a,
                Err(e) => return failure(state, &e.to_string()),
            };
            let r = &announce.request;
            if !state.allowed(&r.info_hash) {
                return failure(state, "torrent not allowed on this tracker");
            }
            // The `ip` parameter is ignored: trusting it would let anyone list a victim.
            let addr = SocketAddr::new(ip, r.port);
            let answer = state.store.announce_classic(
                r.info_hash,
                addr,
                r.peer_id,
                r.left == Some(0),
                r.event,
                state.config.numwant(r.num_want),
                state.now(),
                |_| true,
            );
            let answer = match answer {
                Ok(a) => a,
                Err(e) => return failure(state, &e.to_string()),
            };
            let interval = Duration::from_secs(u64::from(state.config.interval_secs));
            let resp = AnnounceResponse {
                interval,
                min_interval: Some(interval / 2),
                peers: answer.peers.into_iter().map(|(a, _)| a).collect(),
                seeders: Some(answer.stats.seeders),
                leechers: Some(answer.stats.leechers),
                warning: None,
                tracker_id: None,
            };
            let format = if r.compact { PeerFormat::Compact } else { PeerFormat::Dictionary };
            reply(StatusCode::OK, "text/plain", encode_announce_response(&resp, format))
        }
        "/scrape" => {
            Counters::bump(&state.counters.http_scrapes);
            if !state.rate_ok(ip) {
                return failure(state, "rate limited, slow down");
            }
            let hashes = match parse_scrape_query(query) {
                Ok(h) if h.is_empty() => {
                    return failure(state, "scrape of every torrent is not supported")
                }
                Ok(h) => h,
                Err(e) => return failure(state, &e.to_string()),
            };
            let files = hashes.iter().map(|h| (*h, state.store.scrape_classic(h))).collect();
            reply(StatusCode::OK, "text/plain", encode_scrape_response(&ScrapeResponse { files }))
        }
        "/stats" if query.contains("format=prometheus") => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", state.snapshot().to_prometheus())
        }
        "/stats" => reply(StatusCode::OK, "application/json", state.snapshot().to_json()),
        "/metrics" => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", state.snapshot().to_prometheus())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
