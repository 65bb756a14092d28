//! coturn, the STUN server people deploy (Debian's `turnserver`), in STUN-only mode.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use shoal_testkit::*;

/// Why coturn cannot run here, or `None`.
pub fn coturn_unavailable() -> Option<String> {
    require_tool("turnserver").err().map(|e| format!("coturn: {e}"))
}

/// Starts coturn answering STUN binding requests on `ip`:`port` (its state under `dir`) and
/// waits until it does.
#[track_caller]
pub fn start_coturn(dir: &Path, ip: IpAddr, port: u16) -> ChildGuard {
    let mut turnserver = std::process::Command::new("turnserver");
    turnserver
        .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout"])
        .arg(format!("--listening-ip={ip}"))
        .arg(format!("--listening-port={port}"))
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .arg("--userdb")
        .arg(dir.join("turndb"));
    let coturn = ChildGuard::spawn("coturn", turnserver).expect("coturn starts");
    wait_for_stun_server(SocketAddr::from((ip, port)), &coturn);
    coturn
}

/// Waits (bounded) until a STUN server at `server` answers a binding request.
#[track_caller]
fn wait_for_stun_server(server: SocketAddr, process: &ChildGuard) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // RFC 5389 binding request: type, length 0, magic cookie, transaction id.
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"shoal-test-1");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let _ = socket.send_to(&request, server);
        if socket.recv_from(&mut buf).is_ok_and(|(n, _)| n >= 20 && buf[..2] == [0x01, 0x01]) {
            return;
        }
    }
    panic!("no STUN answer from {server}:\n{}", process.output_tail());
}
