//! A pipelining load generator for trackers (ours and others), for benches/tracker/.
//!
//! ```text
//! loadgen udp 127.0.0.1:6969 [--secs 20] [--sockets 16] [--window 64] [--torrents 1000000]
//!                            [--peers 2000000] [--scrape-every 50] [--max-requests N]
//! loadgen ws  wss://127.0.0.1:8000 [--secs 20] [--conns 256] [--window 16] [--offers 10]
//!                            [--torrents 10000] [--scrape-every 20] [--max-requests N]
//! ```
//!
//! aquatic's load testers keep about one request in flight per socket or connection, so on a
//! single core they run out of time before a fast server runs out of work. This one keeps a
//! window of requests in flight everywhere and does as little as it can per response: one
//! thread, batched non-blocking UDP I/O (`recvmmsg`/`sendmmsg` on Linux), and for WebSocket
//! a one-pass scan of each message's top-level keys instead of a full JSON decode.
//!
//! - **UDP (BEP 15)**: every socket is one simulated client. It connects once (again after an
//!   error), then keeps `--window` announces in flight, and one scrape of up to 10 torrents
//!   in every `--scrape-every` requests. Each answer's transaction id must be one still in
//!   flight on that socket, and its length must fit its action; anything else is `invalid`.
//!   Requests without an answer after 2 s are given up (`lost`) and their slot reused.
//! - **WebSocket (WebTorrent)**: every connection is one peer (one peer id). It keeps
//!   `--window` announces in flight, each into a torrent of its choice with `--offers`
//!   offers; every relayed offer it receives is answered (`to_peer_id` and `offer_id` taken
//!   from the offer), and every `--scrape-every`th request is a scrape. Counted as aquatic's
//!   tester counts them: announce responses, relayed offers, relayed answers, scrapes, and
//!   errors (`failure reason`) apart.
//!
//! Torrents are chosen with a skew (index = torrents × u³, u uniform), so a few are popular and
//! have many peers to relay offers to, as in a real tracker. Targets must be loopback
//! addresses: this is a flood by design. Prints a progress line a second to stderr and one
//! JSON result line to stdout: `responses_per_sec` is the sum of every kind of answer.

use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_tracker_proto::ws::push_json_binary_string;

/// No run is longer than this, whatever `--secs` says.
const MAX_SECS: u64 = 3600;
/// Requests without an answer for this long are given up.
const LOST_AFTER: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (mode, target) = match args {
        [m, t, ..] => (m.as_str(), t.as_str()),
        _ => return Err("usage: loadgen udp|ws ADDR|URL [options] (see the source)".into()),
    };
    let opt = |name: &str, default: u64| -> Result<u64, String> {
        match args.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number")),
        }
    };
    let secs = opt("--secs", 20)?.clamp(1, MAX_SECS);
    let max_requests = opt("--max-requests", u64::MAX)?;
    let limits = Limits { deadline: Instant::now() + Duration::from_secs(secs), max_requests };
    match mode {
        "udp" => {
            let addr: SocketAddr =
                target.parse().map_err(|e| format!("{target}: not an address: {e}"))?;
            check_loopback(&addr)?;
            let cfg = UdpCfg {
                sockets: opt("--sockets", 16)?.clamp(1, 1024) as usize,
                window: opt("--window", 64)?.clamp(1, 4096) as usize,
                torrents: opt("--torrents", 1_000_000)?.max(1),
                peers: opt("--peers", 2_000_000)?.max(1),
                scrape_every: opt("--scrape-every", 50)?,
            };
            udp::run(addr, &cfg, &limits).map_err(|e| e.to_string())
        }
        "ws" => {
            let url = WsUrl::parse(target)?;
            let cfg = WsCfg {
                conns: opt("--conns", 256)?.clamp(1, 100_000) as usize,
                window: opt("--window", 16)?.clamp(1, 1024) as u32,
                offers: opt("--offers", 10)?.min(50) as usize,
                torrents: opt("--torrents", 10_000)?.max(1),
                scrape_every: opt("--scrape-every", 20)?,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(ws::run(url, cfg, limits))
        }
        other => Err(format!("unknown mode {other}: udp or ws")),
    }
}

fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr}: only loopback targets (this is a flood by design)"))
    }
}

struct Limits {
    deadline: Instant,
    max_requests: u64,
}

/// xorshift64*: ids and choices need to be cheap and varied, not unpredictable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A torrent index, skewed toward small ones (index = n·u³).
    fn torrent(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((u * u * u * n as f64) as u64).min(n - 1)
    }
    fn id(&mut self) -> [u8; 20] {
        let mut id = [0u8; 20];
        for chunk in id.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        id
    }
}

/// The 20-byte id of simulated torrent or peer number `n` (`salt` keeps the two apart): the
/// same number always gives the same id, so torrents have swarms and peers come back.
fn numbered_id(salt: u8, n: u64) -> [u8; 20] {
    let mut id = [salt; 20];
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(salt);
    for chunk in id[..16].chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    id[16..].copy_from_slice(&(n as u32).to_be_bytes());
    id
}

/// Counters shared by the whole run; one thread, so relaxed atomics cost next to nothing.
#[derive(Default)]
struct Counters {
    sent: [AtomicU64; 4],
    got: [AtomicU64; KINDS.len()],
}

/// What comes back, in the order printed. UDP uses connect/announce/scrape/error/invalid/lost,
/// WebSocket announce/offer/answer/scrape/error/invalid/other.
const KINDS: [&str; 8] =
    ["connect", "announce", "offer", "answer", "scrape", "error", "invalid", "lost"];
const K_CONNECT: usize = 0;
const K_ANNOUNCE: usize = 1;
const K_OFFER: usize = 2;
const K_ANSWER: usize = 3;
const K_SCRAPE: usize = 4;
const K_ERROR: usize = 5;
const K_INVALID: usize = 6;
const K_LOST: usize = 7;
/// What goes out.
const SENT: [&str; 4] = ["connect", "announce", "answer", "scrape"];
const S_CONNECT: usize = 0;
const S_ANNOUNCE: usize = 1;
const S_ANSWER: usize = 2;
const S_SCRAPE: usize = 3;

impl Counters {
    fn got(&self, kind: usize) {
        self.got[kind].fetch_add(1, Relaxed);
    }
    fn sent(&self, kind: usize) {
        self.sent[kind].fetch_add(1, Relaxed);
    }
    fn requests(&self) -> u64 {
        self.sent.iter().map(|c| c.load(Relaxed)).sum()
    }
    /// Everything the tracker answered, as aquatic's testers add it up (errors included;
    /// invalid and lost are not answers).
    fn responses(&self) -> u64 {
        [K_CONNECT, K_ANNOUNCE, K_OFFER, K_ANSWER, K_SCRAPE, K_ERROR]
            .iter()
            .map(|&k| self.got[k].load(Relaxed))
            .sum()
    }
    fn progress(&self, t: f64, last: &mut u64) {
        let now = self.responses();
        eprintln!("loadgen: {t:5.1} s  {:>9} responses/s", now - *last);
        *last = now;
    }
    fn report(&self, mode: &str, started: Instant, extra: serde_json::Value) {
        let secs = started.elapsed().as_secs_f64();
        let per_sec = |n: u64| (n as f64 / secs * 10.0).round() / 10.0;
        let by_kind: serde_json::Map<_, _> = KINDS
            .iter()
            .zip(&self.got)
            .map(|(k, c)| (k.to_string(), per_sec(c.load(Relaxed)).into()))
            .collect();
        let totals: serde_json::Map<_, _> = KINDS
            .iter()
            .zip(&self.got)
            .map(|(k, c)| (k.to_string(), c.load(Relaxed).into()))
            .collect();
        let sent: serde_json::Map<_, _> = SENT
            .iter()
            .zip(&self.sent)
            .map(|(k, c)| (k.to_string(), c.load(Relaxed).into()))
            .collect();
        let out = serde_json::json!({
            "loadgen": "shoal", "mode": mode, "secs": (secs * 100.0).round() / 100.0,
            "responses": self.responses(), "responses_per_sec": per_sec(self.responses()),
            "by_kind": by_kind, "totals": totals, "sent": sent, "config": extra,
        });
        println!("{out}");
        let _ = io::stdout().flush();
    }
}

// --- UDP ---------------------------------------------------------------------------------------

struct UdpCfg {
    sockets: usize,
    window: usize,
    torrents: u64,
    peers: u64,
    scrape_every: u64,
}

mod udp {
    use super::*;
    use shoal_proto::{InfoHash, PeerId};
    use shoal_tracker_proto::types::{AnnounceEvent, AnnounceRequest};
    use shoal_tracker_proto::udp::{
        encode_announce_request, encode_connect_request, encode_scrape_request,
    };
    use std::collections::HashMap;

    /// Datagrams per `recvmmsg`/`sendmmsg` call.
    pub const BATCH: usize = 32;
    const BUF: usize = 2048;

    /// One simulated client.
    struct Client {
        sock: UdpSocket,
        /// `None` until the connect answer came.
        conn_id: Option<u64>,
        /// Transaction ids in flight, with when they were sent.
        inflight: HashMap<u32, Instant>,
        next_tid: u32,
        /// The pending connect request's id and when it went out.
        connecting: Option<(u32, Instant)>,
        sent_requests: u64,
    }

    pub fn run(addr: SocketAddr, cfg: &UdpCfg, limits: &Limits) -> io::Result<()> {
        let counters = Counters::default();
        let mut rng = Rng::new(1);
        let mut clients = Vec::with_capacity(cfg.sockets);
        for i in 0..cfg.sockets {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            // A window of answers can arrive while this thread serves other sockets: a larger
            // receive buffer keeps bursts from being dropped (the kernel caps it at rmem_max).
            let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(4 << 20);
            sock.connect(addr)?;
            sock.set_nonblocking(true)?;
            clients.push(Client {
                sock,
                conn_id: None,
                inflight: HashMap::with_capacity(cfg.window * 2),
                next_tid: (i as u32) << 24 | (rng.next() as u32 & 0xff_ffff),
                connecting: None,
                sent_requests: 0,
            });
        }
        let started = Instant::now();
        let mut bufs = vec![[0u8; BUF]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
        let mut next_print = started + Duration::from_secs(1);
        let mut next_sweep = started + Duration::from_millis(250);
        let mut last = 0;
        let mut idle_passes = 0u32;
        loop {
            let now = Instant::now();
            if now >= limits.deadline {
                break;
            }
            if now >= next_print {
                counters.progress(started.elapsed().as_secs_f64(), &mut last);
                next_print += Duration::from_secs(1);
            }
            let sweep = now >= next_sweep;
            if sweep {
                next_sweep = now + Duration::from_millis(250);
            }
            let may_send = counters.requests() < limits.max_requests;
            let mut progress = false;
            for c in clients.iter_mut() {
                loop {
                    let n = batch::recv(&c.sock, &mut bufs, &mut lens)?;
                    for (buf, &len) in bufs.iter().zip(&lens[..n]) {
                        c.answer(&buf[..len], &counters);
                    }
                    progress |= n > 0;
                    if n < BATCH {
                        break;
                    }
                }
                if sweep {
                    c.sweep(now, &counters);
                }
                if may_send {
                    progress |= c.top_up(cfg, now, &mut rng, &mut out, &counters)?;
                }
            }
            if !may_send && clients.iter().all(|c| c.inflight.is_empty()) {
                break;
            }
            // Nothing came and nothing went: wait a little for answers instead of spinning.
            if progress {
                idle_passes = 0;
            } else {
                idle_passes += 1;
                if idle_passes > 8 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        let extra = serde_json::json!({"target": addr.to_string(), "sockets": cfg.sockets,
            "window": cfg.window, "torrents": cfg.torrents, "peers": cfg.peers,
            "scrape_every": cfg.scrape_every});
        counters.report("udp", started, extra);
        Ok(())
    }

    impl Client {
        fn tid(&mut self) -> u32 {
            self.next_tid = self.next_tid.wrapping_add(1);
            self.next_tid
        }

        fn answer(&mut self, pkt: &[u8], counters: &Counters) {
            let (Some(action), Some(tid)) = (be32(pkt, 0), be32(pkt, 4)) else {
                return counters.got(K_INVALID);
            };
            if action == 0 {
                // A connect answer counts only for the connect in flight.
                match (self.connecting, be64(pkt, 8)) {
                    (Some((want, _)), Some(id)) if want == tid && pkt.len() == 16 => {
                        self.conn_id = Some(id);
                        self.connecting = None;
                        counters.got(K_CONNECT);
                    }
                    _ => counters.got(K_INVALID),
                }
                return;
            }
            if self.inflight.remove(&tid).is_none() {
                return counters.got(K_INVALID);
            }
            let kind = match action {
                // 20-byte header, then 6 bytes per IPv4 peer.
                1 if pkt.len() >= 20 && (pkt.len() - 20).is_multiple_of(6) => K_ANNOUNCE,
                2 if pkt.len() >= 8 && (pkt.len() - 8).is_multiple_of(12) => K_SCRAPE,
                3 => {
                    // An expired connection id (every tracker says "connect" or "connection"
                    // in that message): connect again. Other refusals (a full swarm) keep it.
                    let text = String::from_utf8_lossy(&pkt[8..]).to_ascii_lowercase();
                    if text.contains("connect") {
                        self.conn_id = None;
                    }
                    K_ERROR
                }
                _ => K_INVALID,
            };
            counters.got(kind);
        }

        /// Gives up requests that went unanswered for too long, so the window stays open.
        fn sweep(&mut self, now: Instant, counters: &Counters) {
            let before = self.inflight.len();
            self.inflight.retain(|_, sent| now.duration_since(*sent) < LOST_AFTER);
            for _ in self.inflight.len()..before {
                counters.got(K_LOST);
            }
            if self.connecting.is_some_and(|(_, at)| now.duration_since(at) > LOST_AFTER) {
                self.connecting = None;
                counters.got(K_LOST);
            }
        }

        /// Sends what the window has room for; true when something went out.
        fn top_up(
            &mut self,
            cfg: &UdpCfg,
            now: Instant,
            rng: &mut Rng,
            out: &mut Vec<Vec<u8>>,
            counters: &Counters,
        ) -> io::Result<bool> {
            let Some(conn_id) = self.conn_id else {
                if self.connecting.is_some() {
                    return Ok(false);
                }
                let tid = self.tid();
                self.connecting = Some((tid, now));
                counters.sent(S_CONNECT);
                return match self.sock.send(&encode_connect_request(tid)) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.connecting = None;
                        Ok(false)
                    }
                    Err(e) => Err(e),
                };
            };
            let room = cfg.window.saturating_sub(self.inflight.len()).min(BATCH);
            if room == 0 {
                return Ok(false);
            }
            out.clear();
            let mut tids = [0u32; BATCH];
            for slot in tids.iter_mut().take(room) {
                let tid = self.tid();
                *slot = tid;
                self.sent_requests += 1;
                let pkt = if cfg.scrape_every > 0
                    && self.sent_requests.is_multiple_of(cfg.scrape_every)
                {
                    let hashes: Vec<InfoHash> = (0..1 + rng.below(10))
                        .map(|_| InfoHash(numbered_id(b't', rng.torrent(cfg.torrents))))
                        .collect();
                    counters.sent(S_SCRAPE);
                    encode_scrape_request(conn_id, tid, &hashes)
                        .map_err(|e| io::Error::other(e.to_string()))?
                } else {
                    let peer = rng.below(cfg.peers);
                    let mut req = AnnounceRequest::new(
                        InfoHash(numbered_id(b't', rng.torrent(cfg.torrents))),
                        PeerId(numbered_id(b'p', peer)),
                        1024 + (peer % 60_000) as u16,
                    );
                    // Three seeders in four, as in aquatic's default mix.
                    req.left = Some(if rng.below(4) == 0 { 1 << 20 } else { 0 });
                    req.event = AnnounceEvent::None;
                    req.num_want = Some(30);
                    req.key = peer as u32;
                    counters.sent(S_ANNOUNCE);
                    encode_announce_request(conn_id, tid, &req, &[])
                };
                out.push(pkt);
            }
            let sent = batch::send(&self.sock, out)?;
            for &tid in &tids[..sent] {
                self.inflight.insert(tid, now);
            }
            Ok(sent > 0)
        }
    }

    fn be32(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    fn be64(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    /// Batched I/O on a connected, non-blocking socket: one system call for up to [`BATCH`]
    /// datagrams, which is where a single-threaded generator's time would otherwise go.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    mod batch {
        use super::{BATCH, BUF};
        use std::io;
        use std::net::UdpSocket;
        use std::os::fd::AsRawFd;

        /// Datagrams received (0 when none is waiting); their lengths go to `lens`.
        pub fn recv(
            sock: &UdpSocket,
            bufs: &mut [[u8; BUF]],
            lens: &mut [usize; BATCH],
        ) -> io::Result<usize> {
            // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; each iovec points into
            // one of `bufs`, which outlive the call, and each header at its own iovec.
            let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let n = bufs.len().min(BATCH);
            for i in 0..n {
                iovs[i].iov_base = bufs[i].as_mut_ptr().cast();
                iovs[i].iov_len = BUF;
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs` holds `n` initialised headers (see above).
            let got = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    // A refused datagram (the server is not up yet, or went away) is not
                    // this generator's failure: count nothing and go on.
                    io::ErrorKind::ConnectionRefused => Ok(0),
                    _ => Err(e),
                };
            }
            let got = got as usize;
            for i in 0..got {
                lens[i] = msgs[i].msg_len as usize;
            }
            Ok(got)
        }

        /// How many of `pkts` (the first ones) went out.
        pub fn send(sock: &UdpSocket, pkts: &[Vec<u8>]) -> io::Result<usize> {
            if pkts.is_empty() {
                return Ok(0);
            }
            // SAFETY: as in `recv`; the kernel only reads the packets.
            let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let n = pkts.len().min(BATCH);
            for i in 0..n {
                iovs[i].iov_base = pkts[i].as_ptr() as *mut libc::c_void;
                iovs[i].iov_len = pkts[i].len();
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs` holds `n` initialised headers.
            let sent = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionRefused => Ok(0),
                    _ => Err(e),
                };
            }
            Ok(sent as usize)
        }
    }

    /// The same with one system call per datagram, where `recvmmsg` is not at hand.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    mod batch {
        use super::{BATCH, BUF};
        use std::io;
        use std::net::UdpSocket;

        fn quiet(e: io::Error) -> io::Result<()> {
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionRefused => Ok(()),
                _ => Err(e),
            }
        }

        pub fn recv(
            sock: &UdpSocket,
            bufs: &mut [[u8; BUF]],
            lens: &mut [usize; BATCH],
        ) -> io::Result<usize> {
            for (i, buf) in bufs.iter_mut().enumerate().take(BATCH) {
                match sock.recv(buf) {
                    Ok(n) => lens[i] = n,
                    Err(e) => return quiet(e).map(|()| i),
                }
            }
            Ok(BATCH)
        }

        pub fn send(sock: &UdpSocket, pkts: &[Vec<u8>]) -> io::Result<usize> {
            for (i, p) in pkts.iter().enumerate() {
                if let Err(e) = sock.send(p) {
                    return quiet(e).map(|()| i);
                }
            }
            Ok(pkts.len())
        }
    }
}

// --- WebSocket ---------------------------------------------------------------------------------

struct WsCfg {
    conns: usize,
    window: u32,
    offers: usize,
    torrents: u64,
    scrape_every: u64,
}

struct WsUrl {
    tls: bool,
    host: String,
    addr: SocketAddr,
    path: String,
}

impl WsUrl {
    fn parse(url: &str) -> Result<WsUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(format!("{url}: ws:// or wss:// URL expected"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let addr: SocketAddr = authority
            .replace("localhost", "127.0.0.1")
            .parse()
            .map_err(|e| format!("{authority}: host:port expected ({e})"))?;
        check_loopback(&addr)?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string();
        Ok(WsUrl { tls, host, addr, path })
    }
}

mod ws {
    use super::*;
    use shoal_tracker::ws::frame;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::rustls;

    /// Stop adding new requests while this much is still waiting to be written.
    const OUT_HIGH: usize = 256 << 10;
    /// Messages longer than this are refused (the biggest a tracker sends is a scrape).
    const MAX_MESSAGE: usize = 1 << 20;
    /// A connection that got no answer to a request for this long opens its window again
    /// (some servers never answer some requests: bittorrent-tracker under load).
    const STALL: Duration = Duration::from_secs(2);
    // Small stand-ins for WebRTC session descriptions: the tracker only relays them.
    const OFFER: &str = r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:loadgen\r\na=ice-pwd:loadgenloadgenloadgen\r\n"}"#;
    const ANSWER: &str = r#"{"type":"answer","sdp":"v=0\r\no=- 5511731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:answer\r\na=ice-pwd:answeransweranswer0000\r\n"}"#;

    pub async fn run(url: WsUrl, cfg: WsCfg, limits: Limits) -> Result<(), String> {
        let counters = Arc::new(Counters::default());
        let cfg = Arc::new(cfg);
        let url = Arc::new(url);
        let tls = if url.tls { Some(tls_connector()?) } else { None };
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(limits.deadline);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..cfg.conns {
            let (counters, cfg, url, tls, stop) =
                (counters.clone(), cfg.clone(), url.clone(), tls.clone(), stop.clone());
            let (opened, failed) = (opened.clone(), failed.clone());
            let max_requests = limits.max_requests;
            tasks.spawn(async move {
                let r = tokio::time::timeout_at(deadline, async {
                    let tcp = TcpStream::connect(url.addr).await?;
                    tcp.set_nodelay(true)?;
                    let peer = Peer::new(i as u64, &cfg, &counters, max_requests, &stop);
                    match tls {
                        Some(tls) => {
                            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                                .map_err(|e| io::Error::other(e.to_string()))?;
                            let s = tls.connect(name, tcp).await?;
                            peer.run(s, &url, &opened).await
                        }
                        None => peer.run(tcp, &url, &opened).await,
                    }
                })
                .await;
                if let Ok(Err(e)) = r {
                    if failed.fetch_add(1, Relaxed) < 3 {
                        eprintln!("loadgen: connection {i}: {e}");
                    }
                }
            });
        }
        let mut last = 0;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                _ = tick.tick() => counters.progress(started.elapsed().as_secs_f64(), &mut last),
                _ = tokio::time::sleep_until(deadline) => break,
                done = tasks.join_next() => if done.is_none() { break },
            }
        }
        stop.store(true, Relaxed);
        let extra = serde_json::json!({"target": format!("{}://{}{}",
                if url.tls { "wss" } else { "ws" }, url.addr, url.path),
            "connections": cfg.conns, "connections_opened": opened.load(Relaxed),
            "connections_failed": failed.load(Relaxed), "window": cfg.window,
            "offers": cfg.offers, "torrents": cfg.torrents, "scrape_every": cfg.scrape_every});
        counters.report("ws", started, extra);
        tasks.abort_all();
        Ok(())
    }

    /// A TLS client that takes any certificate: the benchmark's servers use a throwaway
    /// self-signed one. Signatures are still checked, so the handshake costs what it should.
    fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _end_entity: &rustls::pki_types::CertificateDer<'_>,
            _intermediates: &[rustls::pki_types::CertificateDer<'_>],
            _server_name: &rustls::pki_types::ServerName<'_>,
            _ocsp_response: &[u8],
            _now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// One connection: one peer id, a window of announces and scrapes in flight.
    struct Peer {
        /// Our peer id, as a JSON string.
        peer_id: String,
        rng: Rng,
        cfg: Arc<WsCfg>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        max_requests: u64,
        inflight: u32,
        requests: u64,
        last_answer: Instant,
        out: Vec<u8>,
        text: String,
    }

    impl Peer {
        fn new(
            n: u64,
            cfg: &Arc<WsCfg>,
            counters: &Arc<Counters>,
            max_requests: u64,
            stop: &Arc<AtomicBool>,
        ) -> Peer {
            let mut rng = Rng::new(n + 1000);
            let mut peer_id = String::new();
            push_json_binary_string(&mut peer_id, &rng.id());
            Peer {
                peer_id,
                rng,
                cfg: cfg.clone(),
                counters: counters.clone(),
                stop: stop.clone(),
                max_requests,
                inflight: 0,
                requests: 0,
                last_answer: Instant::now(),
                out: Vec::with_capacity(16 << 10),
                text: String::with_capacity(4096),
            }
        }

        async fn run<S: AsyncRead + AsyncWrite + Unpin>(
            mut self,
            mut stream: S,
            url: &WsUrl,
            opened: &AtomicU64,
        ) -> io::Result<()> {
            let mut inbuf = handshake(&mut stream, url).await?;
            opened.fetch_add(1, Relaxed);
            let (mut rd, mut wr) = tokio::io::split(stream);
            let mut dirty = false;
            let mut stall_check = tokio::time::interval(Duration::from_millis(500));
            self.top_up();
            self.read_frames(&mut inbuf)?;
            loop {
                if self.stop.load(Relaxed) {
                    return Ok(());
                }
                tokio::select! {
                    r = rd.read_buf(&mut inbuf) => {
                        if r? == 0 {
                            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed"));
                        }
                        self.read_frames(&mut inbuf)?;
                        self.top_up();
                    }
                    // Reading and writing go on side by side: a server that relays offers to
                    // us while we write must never wait for us to read. TLS keeps the tail of
                    // a write until flushed, so a flush follows once everything is written.
                    w = async {
                        if self.out.is_empty() {
                            wr.flush().await.map(|()| 0)
                        } else {
                            wr.write(&self.out).await
                        }
                    }, if dirty || !self.out.is_empty() => {
                        let n = w?;
                        if self.out.is_empty() {
                            dirty = false;
                        } else {
                            self.out.drain(..n);
                            dirty = true;
                            self.top_up();
                        }
                    }
                    _ = stall_check.tick() => {
                        if self.inflight > 0 && self.last_answer.elapsed() > STALL {
                            self.inflight = 0;
                            self.last_answer = Instant::now();
                            self.top_up();
                        }
                    }
                }
            }
        }

        /// Queues requests until the window is full.
        fn top_up(&mut self) {
            while self.inflight < self.cfg.window
                && self.out.len() < OUT_HIGH
                && self.counters.requests() < self.max_requests
            {
                self.requests += 1;
                self.inflight += 1;
                self.text.clear();
                let hash = numbered_id(b't', self.rng.torrent(self.cfg.torrents));
                if self.cfg.scrape_every > 0 && self.requests.is_multiple_of(self.cfg.scrape_every)
                {
                    self.text.push_str("{\"action\":\"scrape\",\"info_hash\":");
                    push_json_binary_string(&mut self.text, &hash);
                    self.text.push('}');
                    self.counters.sent(S_SCRAPE);
                } else {
                    self.announce(&hash);
                    self.counters.sent(S_ANNOUNCE);
                }
                self.push_text();
            }
        }

        /// An announce as WebTorrent sends it: numwant = the number of offers.
        fn announce(&mut self, hash: &[u8; 20]) {
            let t = &mut self.text;
            t.push_str("{\"action\":\"announce\",\"info_hash\":");
            push_json_binary_string(t, hash);
            t.push_str(",\"peer_id\":");
            t.push_str(&self.peer_id);
            // One in four a seeder, as aquatic's tester.
            let left = if self.rng.below(4) == 0 { 0 } else { 1 << 20 };
            t.push_str(&format!(
                ",\"uploaded\":0,\"downloaded\":0,\"left\":{left},\"numwant\":{}",
                self.cfg.offers
            ));
            t.push_str(",\"offers\":[");
            for i in 0..self.cfg.offers {
                if i > 0 {
                    t.push(',');
                }
                t.push_str("{\"offer_id\":");
                push_json_binary_string(t, &self.rng.id());
                t.push_str(",\"offer\":");
                t.push_str(OFFER);
                t.push('}');
            }
            t.push_str("]}");
        }

        fn push_text(&mut self) {
            // A fixed mask: clients must mask (RFC 6455), but what with does not matter to
            // a tracker on loopback, and a random one per frame would cost for nothing.
            frame::encode_frame(
                &mut self.out,
                frame::OP_TEXT,
                self.text.as_bytes(),
                Some([0x5a, 0x3c, 0x96, 0x0f]),
            );
        }

        /// Handles every complete frame at the start of `inbuf` and drops it.
        fn read_frames(&mut self, inbuf: &mut Vec<u8>) -> io::Result<()> {
            let mut at = 0;
            loop {
                let header = match frame::parse_header(&inbuf[at..], false, MAX_MESSAGE) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    }
                };
                let end = at + header.header_len + header.payload_len;
                if end > inbuf.len() {
                    break;
                }
                let payload = &inbuf[at + header.header_len..end];
                match header.opcode {
                    frame::OP_TEXT | frame::OP_BINARY if header.fin => {
                        let kind = self.message(payload);
                        self.counters.got(kind);
                    }
                    frame::OP_PING => {
                        let mut pong = Vec::new();
                        frame::encode_frame(&mut pong, frame::OP_PONG, payload, Some([0; 4]));
                        self.out.extend_from_slice(&pong);
                    }
                    frame::OP_CLOSE => {
                        return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed"))
                    }
                    frame::OP_PONG => {}
                    // No tracker fragments its messages; count rather than reassemble.
                    _ => self.counters.got(K_INVALID),
                }
                at = end;
            }
            inbuf.drain(..at);
            Ok(())
        }

        /// Classifies one message by its top-level keys, and answers offers.
        fn message(&mut self, json: &[u8]) -> usize {
            let mut f = Fields::default();
            if !top_level(json, |key, value| match key {
                b"action" => f.action = Some(value),
                b"failure reason" => f.failure = true,
                b"offer" => f.offer = true,
                b"answer" => f.answer = true,
                b"info_hash" => f.info_hash = Some(value),
                b"peer_id" => f.peer_id = Some(value),
                b"offer_id" => f.offer_id = Some(value),
                b"interval" | b"complete" => f.stats = true,
                b"files" => f.files = true,
                _ => {}
            }) {
                return K_INVALID;
            }
            let answered = |p: &mut Peer| {
                p.inflight = p.inflight.saturating_sub(1);
                p.last_answer = Instant::now();
            };
            if f.failure {
                answered(self);
                return K_ERROR;
            }
            match f.action {
                Some(b"\"announce\"") if f.offer => {
                    let (Some(hash), Some(from), Some(offer_id)) =
                        (f.info_hash, f.peer_id, f.offer_id)
                    else {
                        return K_INVALID;
                    };
                    // The ids go back exactly as they came, still JSON-escaped.
                    let mut t = std::mem::take(&mut self.text);
                    t.clear();
                    t.push_str("{\"action\":\"announce\",\"info_hash\":");
                    t.push_str(&String::from_utf8_lossy(hash));
                    t.push_str(",\"peer_id\":");
                    t.push_str(&self.peer_id);
                    t.push_str(",\"to_peer_id\":");
                    t.push_str(&String::from_utf8_lossy(from));
                    t.push_str(",\"offer_id\":");
                    t.push_str(&String::from_utf8_lossy(offer_id));
                    t.push_str(",\"answer\":");
                    t.push_str(ANSWER);
                    t.push('}');
                    self.text = t;
                    self.push_text();
                    self.counters.sent(S_ANSWER);
                    K_OFFER
                }
                Some(b"\"announce\"") if f.answer => K_ANSWER,
                Some(b"\"announce\"") if f.stats => {
                    answered(self);
                    K_ANNOUNCE
                }
                Some(b"\"scrape\"") if f.files => {
                    answered(self);
                    K_SCRAPE
                }
                _ => K_INVALID,
            }
        }
    }

    #[derive(Default)]
    struct Fields<'a> {
        action: Option<&'a [u8]>,
        info_hash: Option<&'a [u8]>,
        peer_id: Option<&'a [u8]>,
        offer_id: Option<&'a [u8]>,
        failure: bool,
        offer: bool,
        answer: bool,
        stats: bool,
        files: bool,
    }

    /// Calls `f(key, raw value)` for every member of a JSON object, nested values skipped in
    /// one pass. Keys are compared as written (no tracker escapes its key names). False when
    /// the text is not an object this scanner can follow.
    pub(super) fn top_level<'a>(json: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> bool {
        let mut i = skip_ws(json, 0);
        if json.get(i) != Some(&b'{') {
            return false;
        }
        i = skip_ws(json, i + 1);
        if json.get(i) == Some(&b'}') {
            return true;
        }
        loop {
            let Some(key_end) = string_end(json, i) else { return false };
            let key = &json[i + 1..key_end - 1];
            i = skip_ws(json, key_end);
            if json.get(i) != Some(&b':') {
                return false;
            }
            let start = skip_ws(json, i + 1);
            let Some(end) = value_end(json, start) else { return false };
            f(key, &json[start..end]);
            i = skip_ws(json, end);
            match json.get(i) {
                Some(b',') => i = skip_ws(json, i + 1),
                Some(b'}') => return true,
                _ => return false,
            }
        }
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// The index just past the string that starts (with its quote) at `i`.
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let mut j = i + 1;
        loop {
            match b.get(j)? {
                b'"' => return Some(j + 1),
                b'\\' => j += 2,
                _ => j += 1,
            }
        }
    }

    /// The index just past the value that starts at `i`.
    fn value_end(b: &[u8], i: usize) -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match b.get(j)? {
                        b'"' => {
                            j = string_end(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let mut j = i;
                while !matches!(
                    b.get(j),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    }

    /// The HTTP upgrade; returns what came after the response's headers (frames already).
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        url: &WsUrl,
    ) -> io::Result<Vec<u8>> {
        // The key must be 16 bytes in base64 (the `ws` package checks); which ones does not matter.
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c2hvYWwgbG9hZGdlbiAxNg==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            url.path,
            url.host,
            url.addr.port()
        );
        s.write_all(req.as_bytes()).await?;
        s.flush().await?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            if buf.len() > 16 << 10 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "handshake too long"));
            }
            if s.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed in handshake"));
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 101") {
                    let line = String::from_utf8_lossy(&buf[..buf.len().min(60)]).into_owned();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, line));
                }
                return Ok(buf.split_off(end + 4));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Examples' tests run with `cargo test --examples`; the scanner is the part worth it.
    use super::ws::top_level;

    #[test]
    fn scanner_finds_top_level_keys_only() {
        let json = br#"{"action":"announce","offer":{"type":"offer","sdp":"a\"b}"},"peer_id":"x\u0001","n":12, "l":[1,{"a":2}]}"#;
        let mut keys = Vec::new();
        assert!(top_level(json, |k, v| keys.push((k.to_vec(), v.to_vec()))));
        let keys: Vec<_> = keys.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        assert_eq!(
            keys,
            [
                (&b"action"[..], &b"\"announce\""[..]),
                (b"offer", br#"{"type":"offer","sdp":"a\"b}"}"#),
                (b"peer_id", br#""x\u0001""#),
                (b"n", b"12"),
                (b"l", br#"[1,{"a":2}]"#),
            ]
        );
        assert!(!top_level(b"{\"a\":", |_, _| {}));
        assert!(!top_level(b"[1]", |_, _| {}));
    }
}
