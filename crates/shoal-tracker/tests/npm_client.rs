//! bittorrent-tracker's own client (npm) announces and scrapes against our tracker over
//! ws://, wss://, http:// and udp:// (tests/web/tracker_client.mjs does the checking).

mod common;

use common::{node, tracker, web_dir};
use shoal_tracker::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_client_over_websocket() {
    let Some(dir) = web_dir() else { return };
    let t = tracker(Config::default()).await;
    let url = format!("ws://{}", t.ws_addr.unwrap());
    let (ok, out) =
        node(&dir, &["--import", "./no-webrtc/register.mjs", "tracker_client.mjs", &url], &[])
            .await;
    assert!(ok, "{out}");
    let s = t.stats();
    assert!(s.counters["ws_announces"] >= 3, "{s:?}");
    assert!(s.counters["ws_scrapes"] >= 2, "{s:?}");
    t.shutdown().await.unwrap();
}

/// The npm client announces over a classic tracker URL and finds the seeder it started.
async fn npm_client_over_classic(
    url_of: impl Fn(&shoal_tracker::RunningTracker) -> String,
    counter: &str,
) {
    let Some(dir) = web_dir() else { return };
    let t = tracker(Config::default()).await;
    let url = url_of(&t);
    let (ok, out) = node(
        &dir,
        &["--import", "./no-webrtc/register.mjs", "tracker_client.mjs", &url, "--expect-peer"],
        &[],
    )
    .await;
    assert!(ok, "{out}");
    assert!(t.stats().counters[counter] >= 3);
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_client_over_http() {
    npm_client_over_classic(
        |t| format!("http://{}/announce", t.http_addr.unwrap()),
        "http_announces",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_client_over_udp() {
    npm_client_over_classic(|t| format!("udp://{}", t.udp_addr.unwrap()), "udp_announces").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_client_over_tls_websocket() {
    let Some(dir) = web_dir() else { return };
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        println!("SKIP: openssl is not installed (needed to make a test certificate)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let t = tracker(Config { tls_cert: Some(cert), tls_key: Some(key), ..Config::default() }).await;
    let url = format!("wss://localhost:{}", t.ws_addr.unwrap().port());
    // The certificate is self-signed: let node accept it for this run only.
    let (ok, out) = node(
        &dir,
        &["--import", "./no-webrtc/register.mjs", "tracker_client.mjs", &url],
        &[("NODE_TLS_REJECT_UNAUTHORIZED", "0")],
    )
    .await;
    assert!(ok, "{out}");
    t.shutdown().await.unwrap();
}
