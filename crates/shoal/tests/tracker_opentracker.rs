//! The tracker clients and the announce schedule against a real opentracker, over HTTP and
//! UDP. opentracker must be installed (`apt-get install opentracker`; CI installs it): these
//! tests fail, rather than skip, without it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use shoal::tracker::{announce, scrape, TrackerClient, TrackerClientConfig, TrackerError};
use shoal_proto::{InfoHash, Instant, PeerId};
use shoal_tracker_proto::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, Announcer, AnnouncerConfig, ScrapeStats,
    TrackerTiers,
};

/// A whitelisted torrent no test uses, announced to learn when the whitelist is loaded.
const PROBE: InfoHash = InfoHash([0xee; 20]);

/// A running opentracker, killed (by its PID, through `Child`) when dropped.
struct OpenTracker {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OpenTracker {
    /// Starts opentracker on a loopback address with a whitelist of `hashes` (the Debian build only
    /// serves whitelisted torrents).
    fn start(hashes: &[InfoHash]) -> OpenTracker {
        let binary = find_opentracker();
        let dir = tempfile::tempdir().expect("temp dir");
        let whitelist: String =
            hashes.iter().chain([&PROBE]).map(|h| format!("{}\n", h.to_hex())).collect();
        std::fs::write(dir.path().join("whitelist.txt"), whitelist).expect("write whitelist");
        let addr = unique_local_addr();
        let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
        let log = std::fs::File::create(dir.path().join("opentracker.log")).expect("log file");
        let child = Command::new(&binary)
            .args(["-i", &ip, "-p", &port, "-P", &port])
            // opentracker chroots into -d, so the whitelist path is relative to it.
            .args(["-d", &dir.path().to_string_lossy(), "-w", "/whitelist.txt", "-u", "nobody"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {binary}: {e}"));
        let mut tracker = OpenTracker { child, addr, _dir: dir };
        tracker.wait_ready();
        tracker
    }

    /// Waits until the tracker accepts the probe torrent: it listens before it has
    /// read its whitelist, which it loads in the background.
    fn wait_ready(&mut self) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._dir.path().join("opentracker.log"))
                    .unwrap_or_default();
                panic!(
                    "opentracker exited at start ({status}); it must run as root to chroot. Log:\n{log}"
                );
            }
            if self.accepts_probe() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("opentracker on {} did not accept announces within 5 s", self.addr);
    }

    /// Whether an announce for [`PROBE`] succeeds. (A `stopped` announce would not do:
    /// opentracker answers those without looking at its whitelist.)
    fn accepts_probe(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr) else { return false };
        let query = format!(
            "info_hash={}&peer_id={}&port=1&uploaded=0&downloaded=0&left=0",
            shoal_tracker_proto::percent::encode(&PROBE.0),
            "p".repeat(20)
        );
        let request = format!("GET /announce?{query} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        let mut answer = Vec::new();
        if stream.write_all(request.as_bytes()).is_err() || stream.read_to_end(&mut answer).is_err()
        {
            return false;
        }
        let answer = String::from_utf8_lossy(&answer);
        answer.starts_with("HTTP/1.")
            && answer.contains("interval")
            && !answer.contains("failure reason")
    }

    fn http_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    fn udp_url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_opentracker() -> String {
    let candidates = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path).map(|dir| dir.join("opentracker")).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([Path::new("/usr/bin/opentracker").to_path_buf()])
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            panic!(
                "opentracker is not installed: these tests need a real tracker. Install it with \
                 `apt-get install opentracker` (Debian/Ubuntu; CI installs it)."
            )
        })
}

/// A loopback address and port for one tracker. opentracker binds with SO_REUSEPORT, so two
/// instances on one address and port would silently share the traffic: ports are never handed
/// out twice in this process, and each process uses its own 127.x.y.z address.
fn unique_local_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 1 + (pid >> 16) as u8 % 250, (pid >> 8) as u8, pid as u8);
    for _ in 0..50 {
        let tcp = TcpListener::bind((ip, 0)).expect("bind a loopback TCP port");
        let port = tcp.local_addr().expect("addr").port();
        let fresh = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner()).insert(port);
        if fresh && UdpSocket::bind((ip, port)).is_ok() {
            return SocketAddr::from((ip, port));
        }
    }
    panic!("no port free for both TCP and UDP on {ip} (attempt {n})");
}

static USED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Whether `peers` lists the loopback peer listening on `port`.
fn lists(peers: &[SocketAddr], port: u16) -> bool {
    peers.iter().any(|p| p.port() == port && p.ip().is_loopback())
}

fn client() -> TrackerClient {
    TrackerClient::new(TrackerClientConfig {
        udp_base_timeout: Duration::from_millis(500),
        udp_max_retries: 2,
        ..TrackerClientConfig::default()
    })
    .expect("client")
}

fn request(hash: InfoHash, id: u8, port: u16, left: u64, event: AnnounceEvent) -> AnnounceRequest {
    AnnounceRequest {
        left: Some(left),
        event,
        num_want: Some(50),
        key: u32::from(id),
        ..AnnounceRequest::new(hash, PeerId([id; 20]), port)
    }
}

/// Two peers see each other, counts follow who is a seeder, and `stopped` removes a peer.
async fn swarm_round_trip(url: &str) {
    let client = client();
    let hash = InfoHash([0x5a; 20]);

    let a = announce(&client, url, &request(hash, b'a', 7001, 1000, AnnounceEvent::Started))
        .await
        .unwrap();
    assert!(a.interval >= Duration::from_secs(60), "{a:?}");
    let b = announce(&client, url, &request(hash, b'b', 7002, 0, AnnounceEvent::Started))
        .await
        .unwrap();
    assert!(lists(&b.peers, 7001), "b should see a: {:?}", b.peers);
    let a = announce(&client, url, &request(hash, b'a', 7001, 1000, AnnounceEvent::None))
        .await
        .unwrap();
    assert!(lists(&a.peers, 7002), "a should see b: {:?}", a.peers);
    assert_eq!((a.seeders, a.leechers), (Some(1), Some(1)));

    let counts = scrape(&client, url, &[hash]).await.unwrap();
    assert_eq!(counts.get(&hash), Some(ScrapeStats { seeders: 1, completed: 0, leechers: 1 }));

    announce(&client, url, &request(hash, b'a', 7001, 1000, AnnounceEvent::Stopped)).await.unwrap();
    let b =
        announce(&client, url, &request(hash, b'b', 7002, 0, AnnounceEvent::None)).await.unwrap();
    assert!(!lists(&b.peers, 7001), "a stopped but is still listed: {:?}", b.peers);
    let counts = scrape(&client, url, &[hash]).await.unwrap();
    assert_eq!(counts.get(&hash).map(|s| (s.seeders, s.leechers)), Some((1, 0)));
}

#[tokio::test]
async fn http_announce_and_scrape() {
    let tracker = OpenTracker::start(&[InfoHash([0x5a; 20])]);
    swarm_round_trip(&tracker.http_url()).await;
}

#[tokio::test]
async fn udp_announce_and_scrape() {
    let tracker = OpenTracker::start(&[InfoHash([0x5a; 20])]);
    swarm_round_trip(&tracker.udp_url()).await;
}

#[tokio::test]
async fn completed_event_is_counted() {
    let hash = InfoHash([0x33; 20]);
    let tracker = OpenTracker::start(&[hash]);
    let client = client();
    for url in [tracker.http_url(), tracker.udp_url()] {
        announce(&client, &url, &request(hash, b'c', 7003, 10, AnnounceEvent::Started))
            .await
            .unwrap();
        announce(&client, &url, &request(hash, b'c', 7003, 0, AnnounceEvent::Completed))
            .await
            .unwrap();
    }
    let counts = scrape(&client, &tracker.http_url(), &[hash]).await.unwrap();
    let stats = counts.get(&hash).unwrap();
    assert_eq!(stats.seeders, 1);
    assert!(stats.completed >= 1, "{stats:?}");
}

#[tokio::test]
async fn a_torrent_off_the_whitelist_is_refused_with_the_trackers_reason() {
    let tracker = OpenTracker::start(&[InfoHash([1; 20])]);
    let client = client();
    let req = request(InfoHash([2; 20]), b'x', 7004, 10, AnnounceEvent::Started);
    match announce(&client, &tracker.http_url(), &req).await {
        Err(TrackerError::Failure(reason)) => {
            assert!(reason.contains("not authorized"), "{reason}")
        }
        other => panic!("expected a failure reason, got {other:?}"),
    }
}

/// The sans-IO schedule driven for real: the first tier's tracker is dead (nothing listens
/// on its UDP port), so the announcer fails over to opentracker; shutdown sends `stopped`.
#[tokio::test]
async fn announcer_fails_over_to_a_live_tracker_and_stops() {
    let hash = InfoHash([0x77; 20]);
    let tracker = OpenTracker::start(&[hash]);
    let client = client();
    let dead = format!("udp://{}/announce", unique_local_addr());
    let tiers = TrackerTiers::new(vec![vec![dead.clone()], vec![tracker.http_url()]], 1);
    let mut announcer = Announcer::new(tiers, AnnouncerConfig::default());
    let started = tokio::time::Instant::now();
    let now = || Instant::from_duration(started.elapsed());

    let mut answers: Vec<(String, AnnounceEvent, AnnounceResponse)> = Vec::new();
    let mut failures = Vec::new();
    while answers.is_empty() && failures.len() < 3 {
        let job = announcer.poll(now()).expect("an announce is due");
        let req = request(hash, b'd', 7005, 100, job.event);
        match announce(&client, &job.url, &req).await {
            Ok(resp) => {
                announcer.on_response(&job.url, &resp, now());
                answers.push((job.url, job.event, resp));
            }
            Err(e) => {
                announcer.on_failure(&job.url, &e, now());
                failures.push((job.url, e));
            }
        }
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, dead);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0].0.as_str(), answers[0].1),
        (tracker.http_url().as_str(), AnnounceEvent::Started)
    );
    assert_eq!(
        scrape(&client, &tracker.http_url(), &[hash]).await.unwrap().get(&hash).map(|s| s.leechers),
        Some(1)
    );

    announcer.stop(now());
    let job = announcer.poll(now()).expect("stopped is due");
    assert_eq!(
        (job.url.as_str(), job.event),
        (tracker.http_url().as_str(), AnnounceEvent::Stopped)
    );
    assert_eq!(announcer.poll(now()), None, "the dead tracker never registered us");
    let req = AnnounceRequest { num_want: Some(0), ..request(hash, b'd', 7005, 100, job.event) };
    let resp = announce(&client, &job.url, &req).await.unwrap();
    announcer.on_response(&job.url, &resp, now());
    assert!(announcer.is_stopped());
    assert_eq!(
        scrape(&client, &tracker.http_url(), &[hash]).await.unwrap().get(&hash).map(|s| s.leechers),
        Some(0)
    );
}
