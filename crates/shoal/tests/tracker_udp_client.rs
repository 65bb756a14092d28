//! The UDP tracker client (BEP 15) against a scripted in-process tracker built from the
//! server half of `shoal_tracker_proto::udp`: connection ids, retransmission, error packets,
//! IPv6, BEP 41 URL data and multi-packet scrapes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::tracker::{TrackerClient, TrackerClientConfig, TrackerError};
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::udp::{self, AddressFamily, AnnounceRequestPacket, Request};
use shoal_tracker_proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeStats};
use tokio::net::UdpSocket;

const CONNECTION_ID: u64 = 0x00c0_ffee_0000_0001;

/// What the scripted tracker does with each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Answer everything correctly.
    Normal,
    /// Ignore the first `n` packets, then answer normally.
    DropFirst(usize),
    /// Refuse every announce with an error packet.
    RefuseAnnounces,
    /// Send an answer with a wrong transaction id before each right one.
    StaleFirst,
}

#[derive(Default)]
struct Seen {
    connects: usize,
    announces: Vec<AnnounceRequestPacket>,
    scrapes: Vec<Vec<InfoHash>>,
    packets: usize,
}

struct FakeTracker {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTracker {
    async fn start(bind: &str, script: Script, peers: Vec<SocketAddr>) -> FakeTracker {
        let socket = UdpSocket::bind(bind).await.expect("bind the fake tracker");
        let addr = socket.local_addr().expect("addr");
        let family = AddressFamily::of(&addr);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen_by_task = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else { return };
                let packet =
                    udp::decode_request(&buf[..len]).expect("the client sends valid packets");
                let index = {
                    let mut seen = seen_by_task.lock().unwrap();
                    seen.packets += 1;
                    seen.packets
                };
                if let Script::DropFirst(n) = script {
                    if index <= n {
                        continue;
                    }
                }
                let answer = match packet {
                    Request::Connect { transaction_id } => {
                        seen_by_task.lock().unwrap().connects += 1;
                        udp::encode_connect_response(transaction_id, CONNECTION_ID).to_vec()
                    }
                    Request::Announce(announce) => {
                        let tid = announce.transaction_id;
                        let valid = announce.connection_id == CONNECTION_ID;
                        seen_by_task.lock().unwrap().announces.push(announce);
                        if !valid {
                            continue; // real trackers drop unknown connection ids silently
                        }
                        if script == Script::RefuseAnnounces {
                            udp::encode_error(tid, "torrent not registered")
                        } else {
                            let resp = AnnounceResponse {
                                interval: Duration::from_secs(900),
                                peers: peers.clone(),
                                seeders: Some(2),
                                leechers: Some(5),
                                ..AnnounceResponse::empty()
                            };
                            udp::encode_announce_response(tid, &resp, family)
                        }
                    }
                    Request::Scrape { transaction_id, info_hashes, .. } => {
                        let stats: Vec<ScrapeStats> = info_hashes
                            .iter()
                            .map(|h| ScrapeStats {
                                seeders: u32::from(h.0[0]),
                                completed: 1,
                                leechers: 2,
                            })
                            .collect();
                        seen_by_task.lock().unwrap().scrapes.push(info_hashes);
                        udp::encode_scrape_response(transaction_id, &stats)
                    }
                };
                if script == Script::StaleFirst {
                    let mut stale = answer.clone();
                    stale[4] ^= 0xff;
                    let _ = socket.send_to(&stale, from).await;
                }
                let _ = socket.send_to(&answer, from).await;
            }
        });
        FakeTracker { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("udp://{}/announce?passkey=abc", self.addr)
    }
}

fn client(config: TrackerClientConfig) -> TrackerClient {
    TrackerClient::new(config).expect("client")
}

fn fast() -> TrackerClientConfig {
    TrackerClientConfig {
        udp_base_timeout: Duration::from_millis(100),
        udp_max_retries: 3,
        ..Default::default()
    }
}

fn request() -> AnnounceRequest {
    AnnounceRequest {
        uploaded: 10,
        downloaded: 20,
        left: Some(30),
        event: AnnounceEvent::Started,
        num_want: Some(40),
        key: 0x1234,
        ..AnnounceRequest::new(InfoHash([9; 20]), PeerId([b'p'; 20]), 6881)
    }
}

fn v4_peers() -> Vec<SocketAddr> {
    vec!["10.1.2.3:6881".parse().unwrap(), "192.168.0.9:51413".parse().unwrap()]
}

#[tokio::test]
async fn announces_and_reuses_the_connection_id() {
    let tracker = FakeTracker::start("127.0.0.1:0", Script::Normal, v4_peers()).await;
    let client = client(fast());
    let resp = client.announce(&tracker.url(), &request()).await.unwrap();
    assert_eq!(resp.peers, v4_peers());
    assert_eq!((resp.seeders, resp.leechers), (Some(2), Some(5)));
    assert_eq!(resp.interval, Duration::from_secs(900));
    client.announce(&tracker.url(), &request()).await.unwrap();

    let seen = tracker.seen.lock().unwrap();
    assert_eq!(seen.connects, 1, "the second announce reuses the connection id");
    assert_eq!(seen.announces.len(), 2);
    let sent = &seen.announces[0];
    assert_eq!(sent.connection_id, CONNECTION_ID);
    assert_eq!(sent.request, request());
    assert_eq!(sent.url_data, b"/announce?passkey=abc", "BEP 41 URL data");
    assert_ne!(seen.announces[0].transaction_id, seen.announces[1].transaction_id);
}

#[tokio::test]
async fn an_expired_connection_id_is_renewed() {
    let tracker = FakeTracker::start("127.0.0.1:0", Script::Normal, v4_peers()).await;
    let client = client(TrackerClientConfig { connection_id_ttl: Duration::ZERO, ..fast() });
    client.announce(&tracker.url(), &request()).await.unwrap();
    client.announce(&tracker.url(), &request()).await.unwrap();
    assert_eq!(tracker.seen.lock().unwrap().connects, 2);
}

#[tokio::test]
async fn retransmits_after_lost_packets() {
    // The first connect and the retried connect are both lost.
    let tracker = FakeTracker::start("127.0.0.1:0", Script::DropFirst(2), v4_peers()).await;
    let client = client(fast());
    let resp = client.announce(&tracker.url(), &request()).await.unwrap();
    assert_eq!(resp.peers, v4_peers());
    let seen = tracker.seen.lock().unwrap();
    assert_eq!(seen.packets, 4, "connect, connect, connect (answered), announce");
    assert_eq!(seen.connects, 1);
}

#[tokio::test]
async fn gives_up_after_the_configured_retries() {
    // A socket nobody reads: every datagram the client sends stays queued there.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("udp://{}", silent.local_addr().unwrap());
    let client = client(TrackerClientConfig {
        udp_base_timeout: Duration::from_millis(20),
        udp_max_retries: 2,
        ..Default::default()
    });
    let result = client.announce(&url, &request()).await;
    assert!(matches!(result, Err(TrackerError::Timeout)), "{result:?}");
    let mut buf = [0u8; 64];
    let mut sent = 0;
    while let Ok((len, _)) = silent.try_recv_from(&mut buf) {
        assert_eq!(
            udp::decode_request(&buf[..len]).map(|r| matches!(r, Request::Connect { .. })),
            Ok(true)
        );
        sent += 1;
    }
    assert_eq!(sent, 3, "one try and two retransmissions");
}

#[tokio::test]
async fn an_error_packet_is_a_failure_with_its_text() {
    let tracker = FakeTracker::start("127.0.0.1:0", Script::RefuseAnnounces, vec![]).await;
    let client = client(fast());
    match client.announce(&tracker.url(), &request()).await {
        Err(TrackerError::Failure(text)) => assert_eq!(text, "torrent not registered"),
        other => panic!("expected a failure, got {other:?}"),
    }
    let _ = client.announce(&tracker.url(), &request()).await;
    assert_eq!(tracker.seen.lock().unwrap().connects, 2, "an error drops the connection id");
}

#[tokio::test]
async fn answers_with_other_transaction_ids_are_ignored() {
    let tracker = FakeTracker::start("127.0.0.1:0", Script::StaleFirst, v4_peers()).await;
    let client = client(fast());
    let resp = client.announce(&tracker.url(), &request()).await.unwrap();
    assert_eq!(resp.peers, v4_peers());
    assert_eq!(tracker.seen.lock().unwrap().packets, 2, "no retransmission was needed");
}

#[tokio::test]
async fn ipv6_trackers_answer_with_18_byte_peers() {
    let peers: Vec<SocketAddr> =
        vec!["[2001:db8::1]:6881".parse().unwrap(), "[2001:db8::2]:1".parse().unwrap()];
    let tracker = FakeTracker::start("[::1]:0", Script::Normal, peers.clone()).await;
    let client = client(fast());
    let url = format!("udp://[::1]:{}/announce", tracker.addr.port());
    let resp = client.announce(&url, &request()).await.unwrap();
    assert_eq!(resp.peers, peers);
}

#[tokio::test]
async fn large_scrapes_are_split_into_packets_of_74() {
    let tracker = FakeTracker::start("127.0.0.1:0", Script::Normal, vec![]).await;
    let client = client(fast());
    let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
    let resp = client.scrape(&tracker.url(), &hashes).await.unwrap();
    assert_eq!(resp.files.len(), 100);
    for (i, hash) in hashes.iter().enumerate() {
        assert_eq!(
            resp.get(hash),
            Some(ScrapeStats { seeders: i as u32, completed: 1, leechers: 2 })
        );
    }
    let sizes: Vec<usize> = tracker.seen.lock().unwrap().scrapes.iter().map(Vec::len).collect();
    assert_eq!(sizes, [74, 26]);
    let empty = client.scrape(&tracker.url(), &[]).await;
    assert!(matches!(empty, Err(TrackerError::UdpProtocol(udp::UdpError::NoHashes))), "{empty:?}");
}

#[tokio::test]
async fn nothing_listening_fails_fast() {
    // Bind then drop, so the port is closed: the kernel answers "port unreachable".
    let port = UdpSocket::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let client = client(TrackerClientConfig {
        udp_base_timeout: Duration::from_secs(30),
        ..Default::default()
    });
    let result = client.announce(&format!("udp://127.0.0.1:{port}"), &request()).await;
    assert!(matches!(result, Err(TrackerError::Io(_))), "{result:?}");
}

#[tokio::test]
async fn bad_urls_are_rejected_before_any_io() {
    let client = client(fast());
    for url in ["udp://tracker.example/announce", "udp://:80", "wss://tracker.example", "tracker"] {
        let result = client.announce(url, &request()).await;
        assert!(
            matches!(
                result,
                Err(TrackerError::InvalidUdpUrl(_)
                    | TrackerError::UnsupportedScheme(_)
                    // a client without WebRTC cannot use a WebSocket tracker
                    | TrackerError::WebRtcDisabled(_))
            ),
            "{url}: {result:?}"
        );
    }
}
