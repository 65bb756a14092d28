//! A WebRTC data channel as a byte stream (`AsyncRead + AsyncWrite`).
//!
//! The BitTorrent wire protocol runs over the channel exactly as over TCP: WebTorrent writes
//! its messages into the channel in whatever pieces it likes, so message boundaries mean
//! nothing and the reader sees one stream. The [`super::endpoint`] task owns the `Rtc`; this
//! handle talks to it through a command channel and two shared byte counters:
//!
//! - **inbound**: bytes the endpoint received and this reader has not consumed. The endpoint
//!   drops a connection whose backlog passes [`MAX_INBOUND`] (a peer we asked for a few MiB
//!   sends more than that only if it floods us).
//! - **outbound**: bytes handed to the endpoint and not yet acknowledged by the remote (our
//!   queue plus str0m's `bufferedAmount`). Writes wait while it is above [`HIGH_WATER`], so a
//!   slow browser pushes back on the torrent exactly like a full TCP send buffer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::endpoint::{Cmd, ConnId};

/// Unacknowledged outgoing bytes above which writes wait. Kept small: sctp-proto walks every
/// in-flight chunk on each poll, so more in flight costs CPU per packet (benches/webrtc.py:
/// 256 KiB was no slower than 1 MiB to Chromium, 8.5 against 6.4 MB/s, not interleaved).
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// Writers are woken once the unacknowledged bytes drop below this.
pub(crate) const LOW_WATER: usize = 64 * 1024;
/// Received bytes the reader may leave unconsumed before the connection is dropped.
pub(crate) const MAX_INBOUND: usize = 16 * 1024 * 1024;
/// One write takes at most this much, so one call cannot queue unbounded memory.
const MAX_WRITE: usize = 64 * 1024;

/// State shared by a channel's handle and the endpoint task.
#[derive(Default)]
pub(crate) struct ChannelShared {
    pub inbound: AtomicUsize,
    pub outbound: AtomicUsize,
    pub closed: AtomicBool,
    write_waker: Mutex<Option<Waker>>,
}

impl ChannelShared {
    /// Wakes a writer waiting for room (or for the news that the channel closed).
    pub fn wake_writer(&self) {
        let waker = self.write_waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_writer();
    }
}

/// An open, reliable and ordered data channel.
///
/// `shutdown` closes it gracefully: the endpoint delivers what is still unacknowledged (for
/// up to 5 s) before it closes the connection. Dropping it without a shutdown aborts at once,
/// like a TCP reset, and what the remote has not yet received is lost: the engine drops the
/// channels of peers it is done with.
pub struct DataChannel {
    id: ConnId,
    remote: SocketAddr,
    commands: mpsc::UnboundedSender<Cmd>,
    shared: Arc<ChannelShared>,
    incoming: mpsc::UnboundedReceiver<Bytes>,
    current: Bytes,
    shut_down: bool,
}

impl DataChannel {
    pub(crate) fn new(
        id: ConnId,
        remote: SocketAddr,
        commands: mpsc::UnboundedSender<Cmd>,
        shared: Arc<ChannelShared>,
        incoming: mpsc::UnboundedReceiver<Bytes>,
    ) -> Self {
        DataChannel {
            id,
            remote,
            commands,
            shared,
            incoming,
            current: Bytes::new(),
            shut_down: false,
        }
    }

    /// The remote address ICE settled on.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }
}

impl AsyncRead for DataChannel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.current.is_empty() {
            match this.incoming.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => this.current = chunk,
                // The endpoint dropped the sender: the channel closed. End of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current[..n]);
        this.current.advance(n);
        this.shared.inbound.fetch_sub(n, Ordering::AcqRel);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for DataChannel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.closed.load(Ordering::Acquire) || self.shut_down {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.shared.outbound.load(Ordering::Acquire) >= HIGH_WATER {
            *self.shared.write_waker.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(cx.waker().clone());
            // Room may have appeared (or the channel closed) before the waker was stored.
            let closed = self.shared.closed.load(Ordering::Acquire);
            if !closed && self.shared.outbound.load(Ordering::Acquire) >= HIGH_WATER {
                return Poll::Pending;
            }
            if closed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
        }
        let n = buf.len().min(MAX_WRITE);
        self.shared.outbound.fetch_add(n, Ordering::AcqRel);
        let data = Bytes::copy_from_slice(&buf[..n]);
        if self.commands.send(Cmd::Write { id: self.id, data }).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything written is already queued in the endpoint; SCTP delivers it reliably.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.commands.send(Cmd::Close { id: self.id, flush: true });
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        if !self.shut_down {
            let _ = self.commands.send(Cmd::Close { id: self.id, flush: false });
        }
    }
}
