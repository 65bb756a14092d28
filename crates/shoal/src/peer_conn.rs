//! Peer connections: dialling TCP, the handshake, and the reader and writer tasks that move
//! wire messages between a byte stream (a TCP socket, a WebRTC data channel) and the torrent.
//!
//! The reader frames bytes with the core's codec and forwards whole messages in batches (one
//! batch per socket read), so block payloads stay slices of the read buffer all the way to the
//! disk worker. The writer drains every queued message into one buffer per write.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use shoal_proto::mse::{Attempt, Ciphers, EncryptionPolicy, Rc4Stream};
use shoal_proto::wire::{FrameDecoder, Handshake, Message};
use shoal_proto::PeerKey;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::mse::{self, PeerStream};
use crate::rate::{LinkCaps, RateCap};
use crate::transport::Socket;
use crate::utp::{UtpSocket, UtpStream};

/// How long a dial plus handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer growth step: a loopback read returns up to this much at once.
const READ_CHUNK: usize = 128 * 1024;
/// A write that makes no progress for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A writer flushes once it has gathered this much.
const WRITE_BATCH: usize = 256 * 1024;
/// Under an upload cap, a batch is written in pieces of this size, each waiting its turn.
const LIMITED_WRITE_CHUNK: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ConnError {
    #[error("connecting to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("handshake with {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("handshake I/O with {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("bad handshake from {addr}: {reason}")]
    BadHandshake { addr: SocketAddr, reason: String },
    #[error("{addr} closed the connection during the handshake")]
    Closed { addr: SocketAddr },
    #[error("encryption handshake with {addr}: {source}")]
    Encryption { addr: SocketAddr, source: shoal_proto::mse::MseError },
    #[error("the encryption policy allows no way to connect to {addr}")]
    NoWayIn { addr: SocketAddr },
}

/// Dials `addr` (from `local`, see [`source_ip`]) and opens the connection the ways `policy`
/// allows, in its order (see [`EncryptionPolicy::attempts`]): a peer that closes on one way
/// is dialled again for the next. Returns the stream and the peer's handshake.
pub async fn dial(
    addr: SocketAddr,
    local: Option<IpAddr>,
    ours: &Handshake,
    policy: EncryptionPolicy,
    utp: Option<&UtpSocket>,
) -> Result<(PeerStream, Handshake), ConnError> {
    let mut refused = None;
    for attempt in policy.attempts() {
        let opened = match open(addr, local, utp).await? {
            Opened::Chosen(socket) => handshake(socket, *attempt, addr, ours).await,
            // TCP was kept while uTP had not answered yet. A peer that takes TCP
            // connections only to close them (libtorrent with TCP turned off does) gets
            // the pending uTP attempt a little longer.
            Opened::TcpOverPendingUtp(socket, pending_utp) => {
                match handshake(socket, *attempt, addr, ours).await {
                    Err(e @ (ConnError::Closed { .. } | ConnError::Io { .. })) => {
                        match tokio::time::timeout(UTP_SECOND_CHANCE, pending_utp).await {
                            Ok(Ok(stream)) => {
                                handshake(Socket::Utp(stream), *attempt, addr, ours).await
                            }
                            _ => Err(e),
                        }
                    }
                    other => other,
                }
            }
        };
        match opened {
            Ok((stream, theirs)) => {
                if theirs.info_hash != ours.info_hash {
                    return Err(ConnError::BadHandshake {
                        addr,
                        reason: "different info hash".into(),
                    });
                }
                return Ok((stream, theirs));
            }
            // A peer that does not answer at all would not answer another way either.
            Err(e @ ConnError::Timeout { .. }) => return Err(e),
            Err(e) => refused = Some(e),
        }
    }
    Err(refused.unwrap_or(ConnError::NoWayIn { addr }))
}

async fn handshake(
    socket: Socket,
    attempt: Attempt,
    addr: SocketAddr,
    ours: &Handshake,
) -> Result<(PeerStream, Handshake), ConnError> {
    match attempt {
        Attempt::Plain => plain_handshake(socket, addr, ours).await,
        Attempt::Encrypted(provide) => mse::initiate(socket, addr, provide, ours).await,
    }
}

/// A uTP connection attempt still under way.
type PendingUtp<'a> = Pin<Box<dyn Future<Output = std::io::Result<UtpStream>> + Send + 'a>>;

/// What [`open`] connected.
enum Opened<'a> {
    /// The transport to use.
    Chosen(Socket),
    /// TCP, taken while uTP's attempt was still unanswered; that attempt, kept for a peer
    /// that closes the TCP connection (libtorrent with TCP turned off accepts and closes).
    TcpOverPendingUtp(Socket, PendingUtp<'a>),
}

/// How much longer a pending uTP attempt may take once the TCP connection chosen over it was
/// closed by the peer: a peer that speaks uTP has answered within a round trip or two.
const UTP_SECOND_CHANCE: Duration = Duration::from_secs(1);

/// Least time uTP still gets once TCP has connected (see [`open`]).
const UTP_GRACE: Duration = Duration::from_millis(20);

/// Opens a byte stream to `addr`, over uTP when the peer speaks it (libtorrent, qBittorrent
/// and µTorrent prefer it: LEDBAT yields to the user's other traffic, and some peers behind
/// NATs take nothing else), else TCP. Both are tried at once; uTP wins if it connects first,
/// or within [`UTP_GRACE`] (at least as long again as TCP took) after TCP: a peer that speaks
/// uTP answers within a round trip, and one that does not costs no more than that wait. The
/// loser is dropped. (libtorrent tries uTP alone first and falls back after its 3 s connect
/// timeout: every TCP-only peer costs it 3 s.)
async fn open<'a>(
    addr: SocketAddr,
    local: Option<IpAddr>,
    utp: Option<&'a UtpSocket>,
) -> Result<Opened<'a>, ConnError> {
    let started = tokio::time::Instant::now();
    let tcp = async {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_from(addr, local)).await {
            Err(_) => Err(ConnError::Timeout { addr }),
            Ok(Err(source)) => Err(ConnError::Connect { addr, source }),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Socket::Tcp(s))
            }
        }
    };
    let Some(utp) = utp.filter(|u| u.local_addr().is_ipv4() == addr.is_ipv4()) else {
        return tcp.await.map(Opened::Chosen);
    };
    let mut utp_connect: PendingUtp<'a> = Box::pin(utp.connect(addr));
    tokio::pin!(tcp);
    let tcp_socket = tokio::select! {
        connected = &mut utp_connect => return match connected {
            Ok(stream) => Ok(Opened::Chosen(Socket::Utp(stream))),
            Err(_) => tcp.await.map(Opened::Chosen),
        },
        connected = &mut tcp => match connected {
            Ok(socket) => socket,
            Err(e) => {
                return utp_connect.await.map(|s| Opened::Chosen(Socket::Utp(s))).map_err(|_| e)
            }
        },
    };
    let grace = started.elapsed().max(UTP_GRACE);
    match tokio::time::timeout(grace, &mut utp_connect).await {
        Ok(Ok(stream)) => Ok(Opened::Chosen(Socket::Utp(stream))),
        Ok(Err(_)) => Ok(Opened::Chosen(tcp_socket)),
        Err(_) => Ok(Opened::TcpOverPendingUtp(tcp_socket, utp_connect)),
    }
}

async fn plain_handshake(
    mut socket: Socket,
    addr: SocketAddr,
    ours: &Handshake,
) -> Result<(PeerStream, Handshake), ConnError> {
    socket.write_all(&ours.encode()).await.map_err(|source| ConnError::Io { addr, source })?;
    let mut stream = PeerStream::plain(socket);
    let theirs = stream.read_handshake(addr).await?;
    Ok((stream, theirs))
}

/// The address to send from when talking to `dest`, given the specific IP the session listens
/// on (`None` when it listens on all addresses). Leaving from the listen address means a peer
/// or tracker sees the address we accept connections on: a tracker records the announce's
/// source IP with our port, and otherwise hands out an address where nobody listens. A
/// loopback or other-family listen address cannot reach `dest`: then the system chooses.
pub(crate) fn source_ip(local: Option<IpAddr>, dest: IpAddr) -> Option<IpAddr> {
    local.filter(|ip| ip.is_ipv4() == dest.is_ipv4() && ip.is_loopback() == dest.is_loopback())
}

async fn connect_from(addr: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source_ip(local, addr.ip()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// What a reader task reports to its torrent.
pub enum PeerInput {
    Messages { peer: PeerKey, messages: Vec<Message> },
    Closed { peer: PeerKey, reason: String },
}

/// The torrent task's side of a live connection.
pub struct PeerLink {
    outbox: mpsc::UnboundedSender<Message>,
    /// Block payload bytes handed to the writer and not yet written to the socket. A peer that
    /// reads slowly (or never) makes this grow; the torrent task stops reading blocks for it
    /// from storage above a limit, so its unread uploads cost bounded memory.
    queued: Arc<AtomicUsize>,
    reader: JoinHandle<()>,
}

impl PeerLink {
    /// Starts the reader and writer tasks. `preamble` is written before any message (our
    /// handshake, for connections we accepted). The writer waits on the process's upload cap
    /// before each write, the reader on its download cap after each read.
    pub fn spawn(
        stream: PeerStream,
        peer: PeerKey,
        preamble: Option<Vec<u8>>,
        max_frame: u32,
        input: mpsc::Sender<PeerInput>,
        caps: LinkCaps,
    ) -> PeerLink {
        let PeerStream { socket, ciphers, read_ahead } = stream;
        let (encrypt, decrypt) = match ciphers.map(|c| *c) {
            Some(Ciphers { encrypt, decrypt }) => (Some(encrypt), Some(decrypt)),
            None => (None, None),
        };
        let download = caps.download.clone();
        let reading =
            Reading { peer, max_frame, input: input.clone(), decrypt, read_ahead, download };
        match socket {
            Socket::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                let (read, write) = tcp.into_split();
                Self::spawn_halves(read, write, reading, preamble, encrypt, caps.upload)
            }
            Socket::Utp(utp) => {
                let (read, write) = tokio::io::split(utp);
                Self::spawn_halves(read, write, reading, preamble, encrypt, caps.upload)
            }
        }
    }

    /// Starts the reader and writer tasks on any byte stream (a WebRTC data channel, say),
    /// whose handshake has already been exchanged.
    pub fn spawn_stream<S>(
        stream: S,
        peer: PeerKey,
        max_frame: u32,
        input: mpsc::Sender<PeerInput>,
        caps: LinkCaps,
    ) -> PeerLink
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let reading = Reading {
            peer,
            max_frame,
            input,
            decrypt: None,
            read_ahead: BytesMut::new(),
            download: caps.download,
        };
        Self::spawn_halves(read, write, reading, None, None, caps.upload)
    }

    fn spawn_halves<R, W>(
        read: R,
        write: W,
        reading: Reading,
        preamble: Option<Vec<u8>>,
        encrypt: Option<Rc4Stream>,
        limit: Option<RateCap>,
    ) -> PeerLink
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (outbox, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            peer: reading.peer,
            queued: queued.clone(),
            input: reading.input.clone(),
            limit,
            encrypt,
        };
        tokio::spawn(writer.run(write, rx, preamble));
        let reader = tokio::spawn(reading.run(read));
        PeerLink { outbox, queued, reader }
    }

    pub fn send(&self, message: Message) {
        if let Message::Piece { data, .. } = &message {
            self.queued.fetch_add(data.len(), Ordering::Relaxed);
        }
        let _ = self.outbox.send(message);
    }

    /// Block bytes waiting for the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Closes the connection: the reader stops now, the writer after flushing what is queued.
    pub fn close(self) {
        self.reader.abort();
        drop(self.outbox);
    }
}

/// The reader task's state.
struct Reading {
    peer: PeerKey,
    max_frame: u32,
    input: mpsc::Sender<PeerInput>,
    /// The peer's keystream, for an encrypted connection.
    decrypt: Option<Rc4Stream>,
    /// Stream bytes read with the handshake, decrypted; framed before the first read.
    read_ahead: BytesMut,
    /// The process's download cap: after each read, the next waits for the bytes' turn (the
    /// peer's sending then backs up in TCP's, uTP's or SCTP's window).
    download: Option<RateCap>,
}

impl Reading {
    async fn run<R: AsyncRead + Unpin>(mut self, mut read: R) {
        let peer = self.peer;
        let mut decoder = FrameDecoder::new(self.max_frame);
        let mut buf = std::mem::take(&mut self.read_ahead);
        let reason = loop {
            let mut messages = Vec::new();
            let error = loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(m)) => messages.push(m),
                    Ok(None) => break None,
                    Err(e) => break Some(format!("protocol error: {e}")),
                }
            };
            if !messages.is_empty()
                && self.input.send(PeerInput::Messages { peer, messages }).await.is_err()
            {
                return; // the torrent is gone
            }
            if let Some(reason) = error {
                break reason;
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let before = buf.len();
            match read.read_buf(&mut buf).await {
                Ok(0) => break "connection closed by peer".to_string(),
                Ok(n) => {
                    if let Some(cap) = &self.download {
                        cap.acquire(n).await;
                    }
                }
                Err(e) => break format!("read error: {e}"),
            }
            if let Some(decrypt) = &mut self.decrypt {
                decrypt.apply(&mut buf[before..]);
            }
        };
        let _ = self.input.send(PeerInput::Closed { peer, reason }).await;
    }
}

struct Writer {
    peer: PeerKey,
    queued: Arc<AtomicUsize>,
    input: mpsc::Sender<PeerInput>,
    limit: Option<RateCap>,
    /// Our keystream, for an encrypted connection: applied to each batch in place.
    encrypt: Option<Rc4Stream>,
}

impl Writer {
    async fn run<W: AsyncWrite + Unpin>(
        mut self,
        mut write: W,
        mut rx: mpsc::UnboundedReceiver<Message>,
        preamble: Option<Vec<u8>>,
    ) {
        let mut buf = BytesMut::with_capacity(WRITE_BATCH);
        if let Some(bytes) = preamble {
            buf.extend_from_slice(&bytes);
            if let Err(reason) = self.write(&mut write, &mut buf, 0).await {
                return self.closed(reason).await;
            }
        }
        while let Some(first) = rx.recv().await {
            let mut payload = piece_len(&first);
            first.encode(&mut buf);
            while buf.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(m) => {
                        payload += piece_len(&m);
                        m.encode(&mut buf);
                    }
                    Err(_) => break,
                }
            }
            if let Err(reason) = self.write(&mut write, &mut buf, payload).await {
                return self.closed(reason).await;
            }
        }
        let _ = write.shutdown().await;
    }

    /// Writes `buf`; a peer that takes no bytes at all for `WRITE_TIMEOUT` is gone.
    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        write: &mut W,
        buf: &mut BytesMut,
        payload: usize,
    ) -> Result<(), String> {
        // Under the cap the bytes wait here, still counted as queued: the torrent reads no
        // more blocks for this peer meanwhile, so its requests wait where a cancel reaches them.
        // They go in chunks, each waiting its turn, so a batch is no burst beyond the cap's.
        if let Some(encrypt) = &mut self.encrypt {
            encrypt.apply(buf);
        }
        let result = match self.limit.as_ref().filter(|cap| cap.rate().is_some()) {
            None => tokio::time::timeout(WRITE_TIMEOUT, write.write_all(buf)).await,
            Some(limit) => {
                let mut result = Ok(Ok(()));
                for chunk in buf.chunks(LIMITED_WRITE_CHUNK) {
                    limit.acquire(chunk.len()).await;
                    result = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(chunk)).await;
                    if !matches!(result, Ok(Ok(()))) {
                        break;
                    }
                }
                result
            }
        };
        buf.clear();
        self.queued.fetch_sub(payload, Ordering::Relaxed);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write error: {e}")),
            Err(_) => Err("the peer stopped reading".into()),
        }
    }

    async fn closed(self, reason: String) {
        let _ = self.input.send(PeerInput::Closed { peer: self.peer, reason }).await;
    }
}

fn piece_len(message: &Message) -> usize {
    match message {
        Message::Piece { data, .. } => data.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn speaks_from_the_listen_address_only_where_it_can_reach() {
        let lan = IpAddr::from(Ipv4Addr::new(192, 0, 2, 7));
        let lo = IpAddr::from(Ipv4Addr::new(127, 0, 0, 9));
        let public = IpAddr::from(Ipv4Addr::new(198, 51, 100, 1));
        let v6 = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(source_ip(Some(lan), public), Some(lan));
        assert_eq!(source_ip(Some(lo), IpAddr::from(Ipv4Addr::new(127, 0, 0, 2))), Some(lo));
        // a loopback source cannot reach the outside, nor one family the other
        assert_eq!(source_ip(Some(lo), public), None);
        assert_eq!(source_ip(Some(lan), v6), None);
        assert_eq!(source_ip(None, public), None);
    }

    #[tokio::test]
    async fn dials_from_the_given_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let from = IpAddr::from(Ipv4Addr::new(127, 0, 0, 77));
        let (dialled, accepted) = tokio::join!(connect_from(addr, Some(from)), listener.accept());
        assert_eq!(dialled.unwrap().local_addr().unwrap().ip(), from);
        assert_eq!(accepted.unwrap().1.ip(), from);
    }
}
