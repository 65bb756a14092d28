//! The HTTP tracker client against a scripted in-process HTTP server: query encoding,
//! redirects, the response size cap, failure reasons and status codes, scrape URLs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::tracker::{TrackerClient, TrackerClientConfig, TrackerError};
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::http::{
    encode_announce_response, encode_failure, parse_announce_query, PeerFormat,
};
use shoal_tracker_proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw HTTP/1.1 answer for a request target (path and query).
type Route = Box<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

struct FakeServer {
    base: String,
    targets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start(route: Route) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        let route = Arc::new(route);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let route = route.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let answer = route(&target);
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeServer { base, targets, task }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    out.extend_from_slice(body);
    out
}

fn status(code: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn redirect(to: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

fn peers_answer() -> Vec<u8> {
    let resp = AnnounceResponse {
        interval: Duration::from_secs(1200),
        peers: vec!["1.2.3.4:5".parse().unwrap(), "[2001:db8::9]:10".parse().unwrap()],
        seeders: Some(1),
        leechers: Some(2),
        ..AnnounceResponse::empty()
    };
    encode_announce_response(&resp, PeerFormat::Compact)
}

fn request() -> AnnounceRequest {
    let mut hash = [0u8; 20];
    hash.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8).wrapping_mul(37));
    AnnounceRequest {
        left: Some(99),
        event: AnnounceEvent::Started,
        key: 0xfeed,
        ..AnnounceRequest::new(InfoHash(hash), PeerId(*b"-SH0100-%&=+ \x00\xff12345"), 6881)
    }
}

fn client(config: TrackerClientConfig) -> TrackerClient {
    TrackerClient::new(config).expect("client")
}

#[tokio::test]
async fn announce_sends_binary_fields_intact_and_parses_peers() {
    let server = FakeServer::start(Box::new(|_| ok(&peers_answer()))).await;
    let client = client(TrackerClientConfig::default());
    let url = format!("{}/announce?passkey=s3cret", server.base);
    let resp = client.announce(&url, &request()).await.unwrap();
    assert_eq!(resp.peers.len(), 2);
    assert_eq!(resp.interval, Duration::from_secs(1200));
    assert_eq!((resp.seeders, resp.leechers), (Some(1), Some(2)));

    let targets = server.targets();
    let query = targets[0].strip_prefix("/announce?").expect("path and query kept");
    assert!(query.starts_with("passkey=s3cret&"), "{query}");
    let parsed = parse_announce_query(query).expect("the server half parses what the client sent");
    assert_eq!(parsed.request, request());
}

#[tokio::test]
async fn follows_up_to_three_redirects() {
    let server = FakeServer::start(Box::new(|target: &str| {
        let path = target.split('?').next().unwrap_or("");
        match path {
            "/a1" => redirect("/a2"),
            "/a2" => redirect("/a3"),
            "/a3" => redirect("/announce"),
            "/b1" => redirect("/b2"),
            "/b2" => redirect("/b3"),
            "/b3" => redirect("/b4"),
            "/b4" => redirect("/announce"),
            _ => ok(&peers_answer()),
        }
    }))
    .await;
    let client = client(TrackerClientConfig::default());
    let resp = client.announce(&format!("{}/a1", server.base), &request()).await.unwrap();
    assert_eq!(resp.peers.len(), 2);
    let result = client.announce(&format!("{}/b1", server.base), &request()).await;
    assert!(
        matches!(&result, Err(TrackerError::Http(text)) if text.contains("redirect")),
        "{result:?}"
    );
    assert!(!server.targets().iter().any(|t| t.starts_with("/announce?") && t.contains("b")));
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let server = FakeServer::start(Box::new(|target: &str| {
        let body = vec![b'x'; 4096];
        if target.starts_with("/declared") {
            ok(&body)
        } else {
            // No Content-Length: the size is only known while streaming.
            let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            out.extend_from_slice(&body);
            out
        }
    }))
    .await;
    let client = client(TrackerClientConfig { max_response_bytes: 1024, ..Default::default() });
    for path in ["/declared", "/streamed"] {
        let result = client.announce(&format!("{}{path}", server.base), &request()).await;
        assert!(matches!(result, Err(TrackerError::ResponseTooLarge(1024))), "{path}: {result:?}");
    }
}

#[tokio::test]
async fn failure_reasons_win_over_status_codes() {
    let server = FakeServer::start(Box::new(|target: &str| {
        if target.starts_with("/refuse") {
            status(400, &encode_failure("unregistered torrent"))
        } else if target.starts_with("/ok-refuse") {
            ok(&encode_failure("banned client"))
        } else if target.starts_with("/garbage") {
            ok(b"<html>not bencode</html>")
        } else {
            status(503, b"<html>down</html>")
        }
    }))
    .await;
    let client = client(TrackerClientConfig::default());
    let announce = |path: &'static str| {
        let url = format!("{}{path}", server.base);
        let client = &client;
        async move { client.announce(&url, &request()).await }
    };
    assert!(
        matches!(announce("/refuse").await, Err(TrackerError::Failure(t)) if t == "unregistered torrent")
    );
    assert!(
        matches!(announce("/ok-refuse").await, Err(TrackerError::Failure(t)) if t == "banned client")
    );
    assert!(matches!(announce("/down").await, Err(TrackerError::HttpStatus(503))));
    assert!(matches!(announce("/garbage").await, Err(TrackerError::HttpProtocol(_))));
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // accepted, never answered
        }
    });
    let client = client(TrackerClientConfig {
        http_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let result = client.announce(&url, &request()).await;
    assert!(matches!(result, Err(TrackerError::Timeout)), "{result:?}");
    hold.abort();
}

#[tokio::test]
async fn scrape_uses_the_derived_url() {
    let mut files = b"d5:filesd20:".to_vec();
    files.extend_from_slice(&[7; 20]);
    files.extend_from_slice(b"d8:completei4e10:downloadedi5e10:incompletei6eeee");
    let server = FakeServer::start(Box::new(move |_| ok(&files))).await;
    let client = client(TrackerClientConfig::default());
    let url = format!("{}/x/announce.php?k=1", server.base);
    let resp = client.scrape(&url, &[InfoHash([7; 20])]).await.unwrap();
    assert_eq!(
        resp.get(&InfoHash([7; 20])).map(|s| (s.seeders, s.completed, s.leechers)),
        Some((4, 5, 6))
    );
    assert_eq!(server.targets(), [format!("/x/scrape.php?k=1&info_hash={}", "%07".repeat(20))]);

    let result = client.scrape(&format!("{}/tracker", server.base), &[InfoHash([7; 20])]).await;
    assert!(matches!(result, Err(TrackerError::ScrapeUnsupported(_))), "{result:?}");
}
