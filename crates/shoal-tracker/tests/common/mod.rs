//! Shared helpers for the tracker's integration tests: an in-process tracker on loopback, a
//! minimal WebSocket client built on the crate's own framing, and tool discovery that prints
//! `SKIP: reason` when node or its packages are missing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal_tracker::ws::frame;
use shoal_tracker::{Config, RunningTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

/// A tracker with every listener on a free loopback port.
pub async fn tracker(config: Config) -> RunningTracker {
    let config = Config { http: loopback(), udp: loopback(), ws: loopback(), ..config };
    shoal_tracker::start(config).await.expect("tracker starts")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `tests/web`, if node and its packages are installed; otherwise prints why and returns None.
pub fn web_dir() -> Option<PathBuf> {
    let dir = repo_root().join("tests/web");
    if std::process::Command::new("node").arg("--version").output().is_err() {
        println!("SKIP: node is not installed (scripts/install-test-deps.sh)");
        return None;
    }
    if !dir.join("node_modules/bittorrent-tracker").is_dir() {
        println!(
            "SKIP: tests/web/node_modules missing (run `npm ci --ignore-scripts` in tests/web)"
        );
        return None;
    }
    Some(dir)
}

/// Runs a node script with a time bound; returns (success, stdout).
pub async fn node(dir: &PathBuf, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(dir).args(args).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("node script finished in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("--- node stdout\n{stdout}\n--- node stderr\n{stderr}");
    }
    (out.status.success(), stdout)
}

/// A bare-bones WebSocket client: masked frames out, whole frames in.
pub struct WsClient {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Close(u16),
    Eof,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr) -> WsClient {
        let tcp = TcpStream::connect(addr).await.unwrap();
        WsClient::handshake(tcp, addr).await
    }

    /// A client whose kernel receive buffer is `bytes` (set before connecting, so the window
    /// it advertises is small from the start): one that never reads soon stops the server.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        WsClient::handshake(tcp, addr).await
    }

    async fn handshake(mut tcp: TcpStream, addr: SocketAddr) -> WsClient {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
                buf.drain(..end + 4);
                return WsClient { tcp, buf };
            }
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut out = Vec::new();
        frame::encode_frame(&mut out, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]));
        // The server may already have closed (that is what some tests provoke).
        let _ = self.tcp.write_all(&out).await;
    }

    pub async fn send(&mut self, text: &str) {
        self.send_frame(frame::OP_TEXT, text.as_bytes()).await;
    }

    /// The next data or close frame, or `None` if nothing arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Incoming> {
        tokio::time::timeout(wait, self.recv()).await.ok()
    }

    pub async fn recv(&mut self) -> Incoming {
        loop {
            if let Ok(Some(h)) = frame::parse_header(&self.buf, false, 1 << 24) {
                let end = h.header_len + h.payload_len;
                if self.buf.len() >= end {
                    let payload = self.buf[h.header_len..end].to_vec();
                    self.buf.drain(..end);
                    match h.opcode {
                        frame::OP_TEXT => {
                            return Incoming::Text(String::from_utf8(payload).unwrap())
                        }
                        frame::OP_CLOSE => {
                            let code =
                                payload.get(..2).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                            return Incoming::Close(code);
                        }
                        _ => continue,
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return Incoming::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next text message as JSON (panics on anything else within 5 s).
    pub async fn json(&mut self) -> serde_json::Value {
        match self.recv_within(Duration::from_secs(5)).await {
            Some(Incoming::Text(t)) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A 20-byte id as a JSON binary string.
pub fn bin(id: &[u8; 20]) -> String {
    let mut s = String::new();
    shoal_tracker_proto::ws::push_json_binary_string(&mut s, id);
    s
}
