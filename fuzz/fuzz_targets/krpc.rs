//! Arbitrary bytes as a datagram to a live DHT node: the vendored `mainline` (KRPC decoding,
//! the server's handling of every query type) answering from the start, as ours does. Its
//! decoder is private to the crate, so it is fuzzed where the network reaches it: each input
//! goes to the node over loopback, and then a ping (libtorrent's 2-byte transaction id) must
//! still be answered. A node thread that panicked or stalled answers nothing: that input is
//! the crash.
#![no_main]

use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

struct Node {
    _dht: mainline::Dht,
    addr: SocketAddr,
    client: UdpSocket,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let no_bootstrap: [&str; 0] = [];
        let dht = mainline::Dht::builder()
            .server_mode()
            .bind_address([127, 0, 0, 1].into())
            .bootstrap(&no_bootstrap)
            .build()
            .expect("a DHT node on loopback");
        let addr = SocketAddr::V4(dht.info().local_addr());
        let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
        client.set_read_timeout(Some(Duration::from_millis(200))).expect("a timeout");
        Node { _dht: dht, addr, client }
    })
}

const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:zz1:y1:qe";

fuzz_target!(|data: &[u8]| {
    let node = node();
    // The kernel refuses what UDP cannot carry; that is no input for the node.
    if node.client.send_to(data, node.addr).is_err() {
        return;
    }
    node.client.send_to(PING, node.addr).expect("the ping is sent");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // Answers to the input itself come first, if any: skipped.
        if let Ok(n) = node.client.recv(&mut buf) {
            if buf[..n].windows(7).any(|w| w == b"1:t2:zz") {
                return;
            }
        }
    }
    panic!("the DHT node stopped answering after this input");
});
