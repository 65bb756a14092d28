//! The session's DHT node (`shoal::dht`, answering queries from the start) under hostile
//! traffic on loopback, each kind from its own set of source addresses (127.x.y.z: as
//! distinct as spoofed ones are to the node): garbage and oversized datagrams, unsolicited
//! responses with huge `nodes`, a flood from one source, one query from each of thousands of
//! sources, announces with forged tokens. After each, a well-behaved node is still answered;
//! the flood is cut to a small budget; a forged token stores nothing while a real one does;
//! no answer grows with what the node stores. Every query carries a 2-byte transaction id, as
//! libtorrent's do, and every answer must echo it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use shoal::dht::{Dht, DhtConfig};
use shoal_proto::bencode::{self, Value};

/// Where the node under test listens (its own address: nothing else here uses it).
const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 77, 1);
/// How long a well-behaved query waits for its answer.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The `n`th source address of a set (`set` < 250), all distinct.
fn source(set: u8, n: u16) -> Ipv4Addr {
    let [hi, lo] = n.to_be_bytes();
    Ipv4Addr::new(127, 100 + set, hi, lo.max(1))
}

struct Client {
    socket: UdpSocket,
    id: [u8; 20],
}

impl Client {
    fn new(ip: Ipv4Addr) -> Client {
        let socket = UdpSocket::bind((ip, 0)).expect("a UDP socket on loopback");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Client { socket, id: fastrand_id() }
    }

    fn addr(&self) -> SocketAddrV4 {
        match self.socket.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        }
    }

    fn send(&self, to: SocketAddrV4, datagram: &[u8]) {
        // A datagram the kernel refuses (too large) is no test of the node.
        self.socket.send_to(datagram, to).expect("sent");
    }

    /// Every datagram that arrives within `wait`.
    fn replies(&self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    /// Sends `query` and returns the first answer carrying its transaction id.
    fn ask(&self, to: SocketAddrV4, query: &Query) -> Option<Vec<u8>> {
        self.send(to, &query.encode(&self.id));
        let deadline = Instant::now() + ANSWER_WAIT;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                let reply = buf[..n].to_vec();
                let same = bencode::decode(&reply)
                    .ok()
                    .and_then(|v| v.as_dict().and_then(|d| d.get_bytes(b"t")).map(<[u8]>::to_vec))
                    .is_some_and(|t| t == query.tid);
                if same {
                    return Some(reply);
                }
            }
        }
        None
    }
}

fn fastrand_id() -> [u8; 20] {
    std::array::from_fn(|_| fastrand::u8(..))
}

/// A KRPC query (BEP 5), with a 2-byte transaction id as libtorrent sends it (`mainline`
/// 8.0.1 dropped every query whose id was not 4 bytes: vendor/mainline.diff).
struct Query {
    tid: Vec<u8>,
    method: &'static str,
    /// Arguments besides `id`, as (key, bencoded value), keys in order.
    args: Vec<(&'static str, Vec<u8>)>,
}

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

fn int(n: i64) -> Vec<u8> {
    format!("i{n}e").into_bytes()
}

impl Query {
    fn ping(tid: u16) -> Query {
        Query { tid: tid.to_be_bytes().to_vec(), method: "ping", args: vec![] }
    }

    fn get_peers(tid: u16, info_hash: &[u8; 20]) -> Query {
        Query {
            tid: tid.to_be_bytes().to_vec(),
            method: "get_peers",
            args: vec![("info_hash", string(info_hash))],
        }
    }

    fn announce(tid: u16, info_hash: &[u8; 20], port: u16, token: &[u8]) -> Query {
        Query {
            tid: tid.to_be_bytes().to_vec(),
            method: "announce_peer",
            args: vec![
                ("implied_port", int(0)),
                ("info_hash", string(info_hash)),
                ("port", int(i64::from(port))),
                ("token", string(token)),
            ],
        }
    }

    fn encode(&self, id: &[u8; 20]) -> Vec<u8> {
        let mut args: Vec<(&str, Vec<u8>)> = vec![("id", string(id))];
        args.extend(self.args.iter().cloned());
        args.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = b"d1:ad".to_vec();
        for (key, value) in args {
            out.extend(string(key.as_bytes()));
            out.extend(value);
        }
        out.extend(b"e1:q");
        out.extend(string(self.method.as_bytes()));
        out.extend(b"1:t");
        out.extend(string(&self.tid));
        out.extend(b"1:y1:qe");
        out
    }
}

/// The `r` dictionary of an answer; panics on anything else (an error, garbage).
fn response<'a>(reply: &'a [u8]) -> bencode::Dict<'a> {
    let value = bencode::decode(reply).expect("an answer in bencode");
    let dict = value.as_dict().expect("a dictionary").clone();
    assert_eq!(dict.get_bytes(b"y"), Some(&b"r"[..]), "{:?}", String::from_utf8_lossy(reply));
    dict.get_dict(b"r").expect("a response").clone()
}

/// The peers (`values`) of a `get_peers` answer.
fn values(reply: &[u8]) -> Vec<SocketAddrV4> {
    let r = response(reply);
    let Some(list) = r.get_list(b"values") else { return vec![] };
    list.iter()
        .filter_map(Value::as_bytes)
        .filter(|b| b.len() == 6)
        .map(|b| {
            SocketAddrV4::new(
                Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                u16::from_be_bytes([b[4], b[5]]),
            )
        })
        .collect()
}

/// A well-behaved node, new to ours, is answered (once the shared budget has refilled: a
/// few tries, each waiting for its answer).
#[track_caller]
fn still_answers(node: SocketAddrV4, set: u8, after: &str) {
    let client = Client::new(source(set, 1));
    let reply = (0..4u16)
        .find_map(|tid| client.ask(node, &Query::ping(tid)))
        .unwrap_or_else(|| panic!("no answer after {after}"));
    response(&reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dht_node_holds_under_hostile_traffic() {
    let config = DhtConfig {
        bootstrap: Some(vec![]),
        bind: SocketAddrV4::new(NODE_IP, 0),
        state_file: None,
        server_mode: true,
    };
    let dht = Dht::start(config).await.expect("the DHT node starts");
    let node = dht.local_addr();
    tokio::task::spawn_blocking(move || hostile_traffic(node)).await.expect("the test body");
    drop(dht);
}

fn hostile_traffic(node: SocketAddrV4) {
    still_answers(node, 0, "nothing (the node answers at all)");

    // Garbage: random bytes of every size, the largest datagrams UDP carries, bencode nested
    // deeper than any message, and unsolicited responses with 60 KB of `nodes` and
    // thousands of `values`.
    for n in 0..500u16 {
        let client = Client::new(source(1, n));
        let len = fastrand::usize(0..1500);
        client.send(node, &(0..len).map(|_| fastrand::u8(..)).collect::<Vec<_>>());
    }
    let big = Client::new(source(1, 1000));
    big.send(node, &vec![b'l'; 65_000]);
    // Responses nobody asked for (an unknown transaction id), each near UDP's limit.
    let unsolicited = |key: &str, value: Vec<u8>| {
        let mut m = b"d1:rd2:id20:".to_vec();
        m.extend([7u8; 20]);
        m.extend(string(key.as_bytes()));
        m.extend(value);
        m.extend(b"e1:t2:zz1:y1:re");
        m
    };
    big.send(node, &unsolicited("nodes", string(&[1u8; 26 * 2300])));
    let mut peers = b"l".to_vec();
    for _ in 0..7000 {
        peers.extend(string(&[127, 0, 0, 1, 0x1a, 0xe1]));
    }
    peers.push(b'e');
    big.send(node, &unsolicited("values", peers));
    still_answers(node, 2, "garbage and oversized datagrams");

    // A flood from one source: a few hundred queries at once get a few dozen answers.
    let flooder = Client::new(source(3, 1));
    let sent = 400u16;
    let started = Instant::now();
    for tid in 0..sent {
        flooder.send(node, &Query::ping(tid).encode(&flooder.id));
    }
    let answered = flooder.replies(Duration::from_millis(500)).len();
    let elapsed = started.elapsed().as_secs_f64();
    // The budget: 40 at once, 10 a second after (shoal/src/dht/source_limit.rs).
    let budget = 40.0 + 10.0 * elapsed + 2.0;
    assert!(answered >= 1, "the flooder got no answer at all: the node does not answer");
    assert!(
        (answered as f64) <= budget,
        "{answered} of {sent} queries from one source answered in {elapsed:.2} s"
    );
    still_answers(node, 4, "a flood from one source");

    // One query from each of 5,000 sources, more than the per-source budget tracks (4,096):
    // it stays bounded and the node goes on (a socket at a time: few descriptors open).
    for n in 0..5000u16 {
        let client = Client::new(source(11, n));
        client.send(node, &Query::get_peers(1, &fastrand_id()).encode(&client.id));
    }
    std::thread::sleep(Duration::from_secs(1));
    // One query from each of 1,500 sources, each waiting for its answer: the shared budget
    // answers a few hundred of them, not all.
    let started = Instant::now();
    let many: Vec<Client> = (0..1500u16)
        .map(|n| {
            let client = Client::new(source(5, n));
            client.send(node, &Query::get_peers(1, &fastrand_id()).encode(&client.id));
            client
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 2048];
    let answered = many
        .iter()
        .filter(|c| {
            c.socket.set_nonblocking(true).unwrap();
            c.socket.recv_from(&mut buf).is_ok()
        })
        .count();
    // Every answer counted was sent by now.
    let elapsed = started.elapsed().as_secs_f64();
    // 400 at once, 200 a second after (shoal/src/dht/source_limit.rs).
    let budget = 400.0 + 200.0 * elapsed + 2.0;
    assert!(answered >= 1, "none of 1,500 sources was answered");
    assert!(
        (answered as f64) <= budget,
        "{answered} of 1,500 sources answered in {elapsed:.2} s: no shared budget"
    );
    drop(many);
    still_answers(node, 6, "queries from 1,500 sources");

    // Forged tokens store nothing; a token the node gave does.
    let info_hash = fastrand_id();
    let announcer = Client::new(source(7, 1));
    let forged = announcer.ask(node, &Query::announce(1, &info_hash, 6000, b"forged"));
    if let Some(reply) = forged {
        let kind = bencode::decode(&reply)
            .ok()
            .and_then(|v| v.as_dict().and_then(|d| d.get_bytes(b"y")).map(<[u8]>::to_vec));
        assert_eq!(kind.as_deref(), Some(&b"e"[..]), "a forged token was accepted");
    }
    let asker = Client::new(source(8, 1));
    let reply = asker.ask(node, &Query::get_peers(2, &info_hash)).expect("get_peers answered");
    assert!(values(&reply).is_empty(), "a forged token stored a peer: {:?}", values(&reply));
    let reply = announcer.ask(node, &Query::get_peers(3, &info_hash)).expect("a token");
    let token = response(&reply).get_bytes(b"token").expect("a token").to_vec();
    let stored = announcer.ask(node, &Query::announce(4, &info_hash, 6000, &token));
    response(&stored.expect("the announce answered"));
    let reply = asker.ask(node, &Query::get_peers(5, &info_hash)).expect("get_peers answered");
    let announced = SocketAddrV4::new(*announcer.addr().ip(), 6000);
    assert_eq!(values(&reply), vec![announced], "the announce with a real token was stored");

    // However many peers it stores for a torrent, an answer stays one small datagram.
    for n in 0..300u16 {
        let peer = Client::new(source(9, n));
        let Some(reply) = peer.ask(node, &Query::get_peers(1, &info_hash)) else { continue };
        let Some(token) = response(&reply).get_bytes(b"token").map(<[u8]>::to_vec) else {
            continue;
        };
        peer.send(node, &Query::announce(2, &info_hash, 6001, &token).encode(&peer.id));
    }
    let reply = asker.ask(node, &Query::get_peers(6, &info_hash)).expect("get_peers answered");
    let peers = values(&reply);
    assert!(peers.len() >= 5, "the stored peers are handed out: {peers:?}");
    assert!(
        reply.len() <= 1200,
        "an answer of {} bytes ({} peers) to a query of {} bytes",
        reply.len(),
        peers.len(),
        Query::get_peers(6, &info_hash).encode(&asker.id).len()
    );
    still_answers(node, 10, "the whole run");
}
