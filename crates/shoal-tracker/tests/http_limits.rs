//! The HTTP listener's connection cap (`max_http_connections`): keep-alive connections up to
//! the cap are served, the next one is closed without an answer, and a slot freed by a client
//! that leaves is usable again.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal_tracker::{Config, RunningTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAP: u32 = 3;

/// Sends one keep-alive request and reads its whole answer; `None` if the server closed the
/// connection (or reset it) instead of answering.
async fn request(tcp: &mut TcpStream, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: tracker\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(head_end) = text.find("\r\n\r\n") else { continue };
            let len = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())?;
            if buf.len() >= head_end + 4 + len {
                return Some(text);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("an answer or a close in 5 s")
}

fn counter(tracker: &RunningTracker, name: &str) -> u64 {
    tracker.stats().counters.get(name).copied().unwrap_or_else(|| panic!("no counter {name}"))
}

async fn wait_open(tracker: &RunningTracker, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(tracker, "http_connections_open") != want {
        assert!(Instant::now() < deadline, "open HTTP connections never became {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_freed_slots_reused() {
    let tracker = common::tracker(Config { max_http_connections: CAP, ..Config::default() }).await;
    let addr: SocketAddr = tracker.http_addr.unwrap();

    let mut kept = Vec::new();
    for _ in 0..CAP {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let answer = request(&mut tcp, "/stats").await.expect("served below the cap");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        kept.push(tcp);
    }
    wait_open(&tracker, u64::from(CAP)).await;

    // One more: accepted by the kernel, then closed by the tracker without an answer.
    let mut over = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut over, "/stats").await, None, "a connection over the cap was served");
    assert_eq!(counter(&tracker, "http_connections_refused"), 1);

    // The kept connections still work (keep-alive), and the gauge shows in /stats.
    let answer = request(&mut kept[0], "/stats").await.expect("kept connection still served");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let stats: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(stats["counters"]["http_connections_open"], u64::from(CAP));
    assert_eq!(stats["counters"]["http_connections_refused"], 1);

    // A client leaves: its slot is free again.
    drop(kept.pop());
    wait_open(&tracker, u64::from(CAP) - 1).await;
    let mut again = TcpStream::connect(addr).await.unwrap();
    let answer = request(&mut again, "/metrics").await.expect("served once a slot is free");
    assert!(answer.contains("shoal_tracker_http_connections_open 3\n"), "{answer}");
    assert!(answer.contains("# TYPE shoal_tracker_http_connections_open gauge"), "{answer}");
    assert_eq!(counter(&tracker, "http_connections_refused"), 1);

    drop((kept, again, over));
    tracker.shutdown().await.unwrap();
}
