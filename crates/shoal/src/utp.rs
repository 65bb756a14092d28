//! uTP on a UDP socket: the driver around the core's [`Endpoint`] (BEP 29, LEDBAT). One task
//! owns the socket: it feeds datagrams to the endpoint, runs its timers and sends what it
//! wants sent. Each connection is a [`UtpStream`] (`AsyncRead` + `AsyncWrite`) sharing the
//! endpoint through a mutex, so the peer wire protocol runs over it exactly as over TCP.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::RngCore;
use shoal_proto::utp::{CloseReason, ConnId, Endpoint, EndpointLimits, Received, UtpConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// Datagrams read (or sent) in one go before the driver looks at its other work.
const BATCH: usize = 64;
/// Datagrams sent in one go before the socket is read again: a burst larger than a peer's
/// socket buffer is dropped on arrival.
const SEND_BATCH: usize = 16;
/// Largest datagram read; uTP packets are far smaller, the rest is cut off and refused.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Accepted connections waiting for the session to take them.
const ACCEPT_QUEUE: usize = 64;
/// The kernel's receive buffer we ask for: a burst at loopback speed overflows the default.
const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Default)]
struct Wakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

struct Inner {
    endpoint: Endpoint,
    wakers: HashMap<ConnId, Wakers>,
    /// Connections whose stream was dropped: forgotten once closed.
    orphans: Vec<ConnId>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Something to send (a write, a read that reopened the window, a close).
    wake_driver: Notify,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A uTP endpoint on one UDP socket: connects out, and hands accepted connections over.
pub struct UtpSocket {
    shared: Arc<Shared>,
    local: SocketAddr,
    driver: JoinHandle<()>,
}

impl UtpSocket {
    /// Binds `addr` and starts the driver; accepted connections arrive on the receiver.
    pub async fn bind(
        addr: SocketAddr,
    ) -> io::Result<(UtpSocket, mpsc::Receiver<(UtpStream, SocketAddr)>)> {
        let std_socket = bind_udp(addr)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local = socket.local_addr()?;
        let seed = rand::rng().next_u64();
        let limits = EndpointLimits::default();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                endpoint: Endpoint::new(UtpConfig::default(), limits, seed),
                wakers: HashMap::new(),
                orphans: Vec::new(),
            }),
            wake_driver: Notify::new(),
            clock: Clock::new(),
        });
        let (accepted, rx) = mpsc::channel(ACCEPT_QUEUE);
        let driver = tokio::spawn(drive(socket, shared.clone(), accepted));
        Ok((UtpSocket { shared, local, driver }, rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Opens a connection; fails when the peer does not answer (a few seconds: the SYN is
    /// sent three times) or resets.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<UtpStream> {
        let id = {
            let mut inner = self.shared.lock();
            let now = self.shared.clock.now();
            let id = inner.endpoint.connect(now, addr).ok_or_else(|| {
                io::Error::new(io::ErrorKind::OutOfMemory, "too many uTP connections")
            })?;
            inner.wakers.insert(id, Wakers::default());
            id
        };
        self.shared.wake_driver.notify_one();
        let stream = UtpStream { shared: self.shared.clone(), id, peer: addr };
        std::future::poll_fn(|cx| stream.poll_connected(cx)).await?;
        Ok(stream)
    }
}

impl Drop for UtpSocket {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps it at its own maximum.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

async fn drive(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<(UtpStream, SocketAddr)>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    loop {
        let deadline = shared.lock().endpoint.timeout().map(|t| shared.clock.tokio_instant(t));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = socket.readable() => {
                if readable.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let mut inner = shared.lock();
                let now = shared.clock.now();
                for _ in 0..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => match inner.endpoint.handle(now, from, &buf[..n]) {
                            Received::NotUtp(e) => tracing::trace!(%from, "not a uTP packet: {e}"),
                            Received::Refused => tracing::debug!(%from, "uTP SYN refused: full"),
                            Received::Unknown => tracing::trace!(%from, "uTP packet for no connection"),
                            Received::Connection(_) => {}
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors for earlier sends surface here; they concern one peer.
                        Err(_) => {}
                    }
                }
                while let Some(id) = inner.endpoint.accept() {
                    let Some(peer) = inner.endpoint.peer_addr(id) else { continue };
                    match accepted.try_reserve() {
                        Ok(permit) => {
                            tracing::debug!(%peer, "uTP connection accepted");
                            inner.wakers.insert(id, Wakers::default());
                            permit.send((UtpStream { shared: shared.clone(), id, peer }, peer));
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "uTP accept queue full; resetting");
                            reset_locked(&mut inner, id);
                        }
                    }
                }
            }
            _ = shared.wake_driver.notified() => {}
            _ = sleep => {
                let now = shared.clock.now();
                shared.lock().endpoint.handle_timeout(now);
            }
        }
        let datagrams = {
            let mut inner = shared.lock();
            wake_streams(&mut inner);
            forget_finished(&mut inner, shared.clock.now());
            let now = shared.clock.now();
            let mut datagrams = Vec::new();
            while datagrams.len() < SEND_BATCH {
                let Some(to) = inner.endpoint.poll_transmit(now, &mut out) else { break };
                datagrams.push((to, out.clone()));
            }
            if datagrams.len() == SEND_BATCH {
                // More to send: come back at once.
                shared.wake_driver.notify_one();
            }
            datagrams
        };
        for (to, datagram) in datagrams {
            if let Err(e) = socket.send_to(&datagram, to).await {
                tracing::trace!(%to, "uTP send failed: {e}");
            }
        }
    }
}

fn reset_locked(inner: &mut Inner, id: ConnId) {
    if let Some(conn) = inner.endpoint.conn(id) {
        conn.reset();
    }
    inner.endpoint.touch(id);
    inner.orphans.push(id);
}

fn wake_streams(inner: &mut Inner) {
    for id in inner.endpoint.take_woken() {
        if let Some(w) = inner.wakers.get_mut(&id) {
            if let Some(waker) = w.read.take() {
                waker.wake();
            }
            if let Some(waker) = w.write.take() {
                waker.wake();
            }
        }
    }
}

fn forget_finished(inner: &mut Inner, now: shoal_proto::Instant) {
    let Inner { endpoint, orphans, wakers } = inner;
    orphans.retain(|&id| {
        let finished = endpoint.conn(id).is_none_or(|c| c.is_finished(now));
        if finished {
            endpoint.remove(id);
            wakers.remove(&id);
        }
        !finished
    });
}

/// One uTP connection as a byte stream.
pub struct UtpStream {
    shared: Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
}

fn closed_error(reason: Option<CloseReason>) -> io::Error {
    match reason {
        Some(CloseReason::Reset) => io::Error::new(io::ErrorKind::ConnectionReset, "uTP reset"),
        Some(CloseReason::ConnectTimeout) => {
            io::Error::new(io::ErrorKind::TimedOut, "uTP connect timed out")
        }
        Some(CloseReason::TimedOut) => io::Error::new(io::ErrorKind::TimedOut, "uTP timed out"),
        _ => io::Error::new(io::ErrorKind::BrokenPipe, "uTP connection closed"),
    }
}

impl UtpStream {
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let Some(conn) = inner.endpoint.conn(self.id) else {
            return Poll::Ready(Err(closed_error(None)));
        };
        if conn.is_connected() {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = conn.close_reason() {
            return Poll::Ready(Err(closed_error(Some(reason))));
        }
        inner.wakers.entry(self.id).or_default().read = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let Some(conn) = inner.endpoint.conn(self.id) else {
            return Poll::Ready(Ok(()));
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Zeroing only what this read fills: a reader's fresh buffer is often far larger.
        let want = conn.readable_bytes().clamp(1, buf.remaining());
        match conn.read_slice(buf.initialize_unfilled_to(want)) {
            Some(0) => {
                inner.wakers.entry(self.id).or_default().read = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(n) => {
                buf.advance(n);
                inner.endpoint.touch(self.id);
                drop(inner);
                // The window may have reopened: the driver sends the update.
                self.shared.wake_driver.notify_one();
                Poll::Ready(Ok(()))
            }
            // The peer's FIN arrived (a clean end, whatever followed), or the connection died.
            None if conn.is_eof() => Poll::Ready(Ok(())),
            None => match conn.close_reason() {
                None | Some(CloseReason::Done) => Poll::Ready(Ok(())),
                reason => Poll::Ready(Err(closed_error(reason))),
            },
        }
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        let Some(conn) = inner.endpoint.conn(self.id) else {
            return Poll::Ready(Err(closed_error(None)));
        };
        if let Some(reason) = conn.close_reason() {
            return Poll::Ready(Err(closed_error(Some(reason))));
        }
        let n = conn.write(data);
        if n == 0 {
            inner.wakers.entry(self.id).or_default().write = Some(cx.waker().clone());
            return Poll::Pending;
        }
        inner.endpoint.touch(self.id);
        drop(inner);
        self.shared.wake_driver.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are the endpoint's to deliver (and retransmit) from here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        if let Some(conn) = inner.endpoint.conn(self.id) {
            conn.close();
        }
        inner.endpoint.touch(self.id);
        drop(inner);
        self.shared.wake_driver.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Some(conn) = inner.endpoint.conn(self.id) {
            tracing::debug!(peer = %self.peer, rtt = ?conn.rtt(), stats = ?conn.stats(), "uTP stream dropped");
            if conn.is_connected() {
                // What was written still goes out, then the FIN.
                conn.close();
            } else {
                conn.reset();
            }
        }
        inner.endpoint.touch(self.id);
        inner.orphans.push(self.id);
        drop(inner);
        self.shared.wake_driver.notify_one();
    }
}
