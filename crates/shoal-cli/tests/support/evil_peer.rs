//! A BitTorrent peer that misbehaves on purpose, for Shoal to dial.
//!
//! It listens on a loopback address of its own (so that Shoal's per-IP bans hit it alone),
//! reads Shoal's handshake, then follows a [`Script`]: lie about its data, break the framing,
//! flood, say nothing... Everything it sees is reported as [`PeerEvent`]s, above all when
//! *Shoal* closes the connection, which is what the tests wait for. Messages are encoded and
//! decoded with `shoal_proto::wire`, the codec under test, so the lies are well-formed unless
//! a script says otherwise.
//!
//! Threads poll a stop flag (short socket timeouts), so dropping an [`EvilPeer`] ends them all
//! promptly; nothing outlives the test.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shoal_proto::wire::{FrameDecoder, Handshake, Message, HANDSHAKE_LEN};
use shoal_proto::{InfoHash, PeerId};
use shoal_testkit::loopback_ip;

/// How often blocked socket calls come back to look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Largest block a lying peer will fabricate (Shoal asks for 16 KiB).
const MAX_FAKE_BLOCK: u32 = 128 * 1024;
/// Block size of an unrequested flood.
const FLOOD_BLOCK: usize = 16 * 1024;

/// What the peer does once Shoal has dialled it and sent its handshake.
#[derive(Clone, Debug)]
pub enum Script {
    /// Handshakes, claims every one of `pieces` pieces (a bitfield, or BEP 6 have-all),
    /// unchokes, and answers every request with bytes that are not the torrent's.
    WrongBytes { pieces: u32, have_all: bool },
    /// Handshakes, then sends a frame whose length prefix is `len` (followed by a few bytes
    /// of body that cannot complete it).
    LengthPrefix(u32),
    /// Handshakes, then `have` for this piece index.
    Have(u32),
    /// Handshakes, then a bitfield with exactly these bytes.
    Bitfield(Vec<u8>),
    /// Handshakes, claims nothing, then sends `piece` messages for a block Shoal never asked
    /// it for (piece 0, offset 0, 16 KiB), `total` bytes of them.
    UnrequestedBlocks { total: u64 },
    /// Answers Shoal's handshake with these bytes instead of one.
    Garbage(Vec<u8>),
    /// Answers with a well-formed handshake for another torrent.
    WrongInfoHash,
    /// Accepts, reads, and never says a word.
    Silent,
}

/// What the peer observed, per accepted connection (numbered from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    Accepted {
        conn: usize,
    },
    /// Shoal's handshake arrived.
    Handshook {
        conn: usize,
    },
    /// The script's misdeed is on the wire (all of it written).
    Misbehaved {
        conn: usize,
    },
    /// Shoal ended the connection: `how` is EOF, a reset, or a failed write.
    Closed {
        conn: usize,
        how: String,
    },
    /// Shoal sent something that is not valid peer wire protocol.
    ShoalViolation {
        conn: usize,
        what: String,
    },
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    /// Connections that opened with an encrypted handshake, hung up on.
    declined: AtomicUsize,
    requests_answered: AtomicU64,
    bytes_sent: AtomicU64,
}

/// A running misbehaving peer; stopped (all threads joined) when dropped.
pub struct EvilPeer {
    addr: SocketAddr,
    label: String,
    events: Receiver<PeerEvent>,
    seen: Vec<PeerEvent>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl EvilPeer {
    /// Listens on a fresh loopback address and follows `script` on every connection.
    pub fn start(label: &str, script: Script) -> EvilPeer {
        let ip = loopback_ip();
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("{label}: binding a listener on {ip}: {e}"));
        let addr = listener.local_addr().expect("listener address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let (tx, events) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Context { script, tx, counters: counters.clone(), stop: stop.clone() };
        let acceptor = thread::spawn(move || accept_loop(listener, ctx));
        EvilPeer {
            addr,
            label: label.to_owned(),
            events,
            seen: Vec::new(),
            counters,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Times Shoal dialled this peer to speak BitTorrent: accepted connections less the
    /// encrypted attempts hung up on (each followed by Shoal's plaintext retry).
    pub fn dialled(&self) -> usize {
        self.accepted() - self.counters.declined.load(Ordering::SeqCst)
    }

    /// Requests answered with fabricated data so far.
    pub fn requests_answered(&self) -> u64 {
        self.counters.requests_answered.load(Ordering::SeqCst)
    }

    /// Every event received so far, oldest first.
    pub fn events(&mut self) -> &[PeerEvent] {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        &self.seen
    }

    /// Waits up to `timeout` for Shoal to close a connection; returns how it was closed.
    /// Panics, listing what was seen, if that does not happen (or Shoal broke the protocol).
    #[track_caller]
    pub fn wait_closed(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(how) = self.seen.iter().find_map(|e| match e {
                PeerEvent::Closed { how, .. } => Some(how.clone()),
                _ => None,
            }) {
                self.assert_no_violation();
                return how;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{}: Shoal did not close the connection within {timeout:?}; \
                     the peer saw {:?} ({} requests answered)",
                    self.label,
                    self.seen,
                    self.requests_answered()
                ),
            }
        }
    }

    /// Panics if Shoal sent anything that is not valid wire protocol.
    #[track_caller]
    pub fn assert_no_violation(&mut self) {
        let label = self.label.clone();
        let bad: Vec<_> = self
            .events()
            .iter()
            .filter(|e| matches!(e, PeerEvent::ShoalViolation { .. }))
            .collect();
        assert!(bad.is_empty(), "{label}: Shoal broke the protocol: {bad:?}");
    }
}

impl Drop for EvilPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

#[derive(Clone)]
struct Context {
    script: Script,
    tx: Sender<PeerEvent>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Context {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn emit(&self, event: PeerEvent) {
        // the receiver may be gone when the test is over
        let _ = self.tx.send(event);
    }
}

fn accept_loop(listener: TcpListener, ctx: Context) {
    let workers: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());
    while !ctx.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                let conn = ctx.counters.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                ctx.emit(PeerEvent::Accepted { conn });
                let ctx = ctx.clone();
                let worker = thread::spawn(move || serve(conn, stream, &ctx));
                if let Ok(mut w) = workers.lock() {
                    w.push(worker);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL / 5),
            Err(_) => thread::sleep(POLL),
        }
    }
    let workers = workers.into_inner().unwrap_or_default();
    for worker in workers {
        let _ = worker.join();
    }
}

/// Why a connection ended.
enum End {
    /// Shoal closed it (EOF, reset, failed write).
    Closed(String),
    /// Shoal sent something invalid.
    Violation(String),
    /// The test is over, or the peer hung up by itself.
    Stopped,
}

fn serve(conn: usize, mut stream: TcpStream, ctx: &Context) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(POLL)))
        .and_then(|()| stream.set_nodelay(true));
    if let Err(e) = setup {
        ctx.emit(PeerEvent::ShoalViolation { conn, what: format!("socket setup failed: {e}") });
        return;
    }
    let end = run_script(conn, &mut stream, ctx);
    match end {
        End::Closed(how) => ctx.emit(PeerEvent::Closed { conn, how }),
        End::Violation(what) => ctx.emit(PeerEvent::ShoalViolation { conn, what }),
        End::Stopped => {}
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn run_script(conn: usize, stream: &mut TcpStream, ctx: &Context) -> End {
    let mut theirs = [0u8; HANDSHAKE_LEN];
    if let Err(end) = read_exact(stream, &mut theirs, ctx) {
        return end;
    }
    if shoal_proto::mse::looks_plain(&theirs) == Some(false) {
        // An encrypted (MSE) handshake: this peer speaks plaintext only and hangs up, as such
        // clients do; Shoal is expected to dial again in plaintext, where the script runs.
        ctx.counters.declined.fetch_add(1, Ordering::SeqCst);
        return End::Stopped;
    }
    let handshake = match Handshake::parse(&theirs) {
        Ok(Some(hs)) => hs,
        other => return End::Violation(format!("bad handshake from Shoal: {other:?}")),
    };
    ctx.emit(PeerEvent::Handshook { conn });
    let ours = Handshake::new(handshake.info_hash, PeerId(*b"-EV0001-evil-peer-01"));

    let mut out: Vec<u8> = Vec::new();
    match &ctx.script {
        Script::Silent => {}
        Script::Garbage(bytes) => out.extend_from_slice(bytes),
        Script::WrongInfoHash => {
            let mut other = handshake.info_hash.0;
            other.iter_mut().for_each(|b| *b ^= 0x5a);
            out.extend_from_slice(&Handshake::new(InfoHash(other), ours.peer_id).encode());
        }
        Script::WrongBytes { pieces, have_all } => {
            out.extend_from_slice(&ours.encode());
            if *have_all {
                encode(&Message::HaveAll, &mut out);
            } else {
                encode(&Message::Bitfield(full_bitfield(*pieces).into()), &mut out);
            }
            encode(&Message::Unchoke, &mut out);
        }
        Script::LengthPrefix(len) => {
            out.extend_from_slice(&ours.encode());
            out.extend_from_slice(&len.to_be_bytes());
            // a piece message's id and header: a reader that trusts the prefix now waits
            // (and buffers) for `len` bytes
            out.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        Script::Have(piece) => {
            out.extend_from_slice(&ours.encode());
            encode(&Message::Have(*piece), &mut out);
        }
        Script::Bitfield(bits) => {
            out.extend_from_slice(&ours.encode());
            encode(&Message::Bitfield(bits.clone().into()), &mut out);
        }
        Script::UnrequestedBlocks { .. } => out.extend_from_slice(&ours.encode()),
    }
    if let Err(end) = send_all(stream, &out, ctx) {
        return end;
    }
    if let Script::UnrequestedBlocks { total } = ctx.script {
        let mut block = Vec::new();
        let data: Vec<u8> = (0..FLOOD_BLOCK).map(|i| (i % 253) as u8).collect();
        encode(&Message::Piece { piece: 0, offset: 0, data: data.into() }, &mut block);
        let mut sent = 0u64;
        while sent < total {
            if let Err(end) = send_all(stream, &block, ctx) {
                return end;
            }
            sent += FLOOD_BLOCK as u64;
        }
    }
    ctx.emit(PeerEvent::Misbehaved { conn });
    read_loop(stream, ctx)
}

/// Reads (and decodes) what Shoal sends until it closes the connection; a lying peer answers
/// requests here.
fn read_loop(stream: &mut TcpStream, ctx: &Context) -> End {
    let mut decoder = FrameDecoder::default();
    let mut buf = Default::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match read_some(stream, &mut chunk, ctx) {
            Ok(n) => n,
            Err(end) => return end,
        };
        extend(&mut buf, &chunk[..n]);
        loop {
            let message = match decoder.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return End::Violation(format!("undecodable message: {e}")),
            };
            if let (Script::WrongBytes { .. }, Message::Request(block)) = (&ctx.script, &message) {
                if block.length == 0 || block.length > MAX_FAKE_BLOCK {
                    return End::Violation(format!("absurd request {block:?}"));
                }
                let data = fake_block(block.piece, block.offset, block.length);
                let mut out = Vec::new();
                encode(
                    &Message::Piece { piece: block.piece, offset: block.offset, data: data.into() },
                    &mut out,
                );
                if let Err(end) = send_all(stream, &out, ctx) {
                    return end;
                }
                ctx.counters.requests_answered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Appends bytes to the decoder's buffer (whatever buffer type the codec uses).
fn extend<B: Extend<u8>>(buf: &mut B, bytes: &[u8]) {
    buf.extend(bytes.iter().copied());
}

/// A message encoded by the codec under test, appended to `out`.
fn encode(message: &Message, out: &mut Vec<u8>) {
    let mut buf = Default::default();
    message.encode(&mut buf);
    out.extend_from_slice(&buf);
}

/// A bitfield with all `pieces` bits set and the spare bits clear.
pub fn full_bitfield(pieces: u32) -> Vec<u8> {
    let mut bits = vec![0xffu8; pieces.div_ceil(8) as usize];
    let spare = bits.len() * 8 - pieces as usize;
    if let Some(last) = bits.last_mut() {
        *last &= 0xffu8 << spare;
    }
    bits
}

/// Bytes that are not the torrent's (deterministic, so a failure reproduces).
fn fake_block(piece: u32, offset: u32, length: u32) -> Vec<u8> {
    let mut state = u64::from(piece) << 32 | u64::from(offset) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn read_exact(stream: &mut TcpStream, buf: &mut [u8], ctx: &Context) -> Result<(), End> {
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_some(stream, &mut buf[filled..], ctx)?;
    }
    Ok(())
}

/// One successful read (at least one byte), waiting as long as the test runs.
fn read_some(stream: &mut TcpStream, buf: &mut [u8], ctx: &Context) -> Result<usize, End> {
    loop {
        if ctx.stopping() {
            return Err(End::Stopped);
        }
        match stream.read(buf) {
            Ok(0) => return Err(End::Closed("EOF".into())),
            Ok(n) => return Ok(n),
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(End::Closed(format!("read failed: {e}"))),
        }
    }
}

fn send_all(stream: &mut TcpStream, mut bytes: &[u8], ctx: &Context) -> Result<(), End> {
    while !bytes.is_empty() {
        if ctx.stopping() {
            return Err(End::Stopped);
        }
        match stream.write(bytes) {
            Ok(0) => return Err(End::Closed("write returned 0".into())),
            Ok(n) => {
                bytes = &bytes[n..];
                ctx.counters.bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
            }
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(End::Closed(format!("write failed: {e}"))),
        }
    }
    Ok(())
}

fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// A raw connection to Shoal's listen port, for abuse from the dialling side.
pub struct RawClient {
    stream: TcpStream,
    label: String,
}

impl RawClient {
    /// Connects to `addr` and writes `bytes` (possibly none).
    pub fn connect(label: &str, addr: SocketAddr, bytes: &[u8]) -> RawClient {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{label}: connecting to Shoal at {addr}: {e}"));
        stream.set_read_timeout(Some(POLL)).expect("read timeout");
        if !bytes.is_empty() {
            stream.write_all(bytes).unwrap_or_else(|e| panic!("{label}: writing: {e}"));
        }
        RawClient { stream, label: label.to_owned() }
    }

    /// True once Shoal has closed the connection (EOF or reset); reads and discards whatever
    /// Shoal sent meanwhile. Returns after at most `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Panics unless Shoal closes the connection within `timeout`.
    #[track_caller]
    pub fn assert_closed_within(&mut self, timeout: Duration) {
        assert!(
            self.closed_within(timeout),
            "{}: Shoal kept the connection open for {timeout:?}",
            self.label
        );
    }
}
