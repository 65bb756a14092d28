//! Datagrams in batches: on Linux (glibc) one `recvmmsg` reads up to [`BATCH`] requests and one
//! `sendmmsg` sends their answers. A tracker's packets are tiny, so the per-call part of the
//! kernel's work (entry, file lookup, copying the headers) is a good share of a datagram's
//! cost; batching pays it once per 32. Elsewhere the same interface loops over
//! `try_recv_from` / `try_send_to`.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Room per received datagram: a BEP 15 request is at most 16 + 20 × 74 bytes (a full scrape).
/// A longer one is truncated to this, as `recv_from` into a buffer of this size would.
pub const MAX_DATAGRAM: usize = 2048;

pub struct Batch {
    /// `BATCH` slots of `MAX_DATAGRAM` bytes.
    bufs: Box<[u8]>,
    /// For each datagram of the last `recv`: its length and sender.
    received: Vec<(usize, SocketAddr)>,
    /// The answers, back to back, and where each ends and goes.
    replies: Vec<u8>,
    reply_ends: Vec<(usize, SocketAddr)>,
    /// Answers already sent (or given up).
    sent: usize,
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            bufs: vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            received: Vec::with_capacity(BATCH),
            replies: Vec::with_capacity(BATCH * 512),
            reply_ends: Vec::with_capacity(BATCH),
            sent: 0,
        }
    }

    /// Reads what is waiting, up to `BATCH` datagrams; `WouldBlock` when nothing is.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let Batch { bufs, received, .. } = self;
        socket.try_io(tokio::io::Interest::READABLE, || sys::recv(socket, bufs, received))?;
        Ok(self.received.len())
    }

    /// Calls `answer(packet, from, out)` for each datagram received; an answer appended to
    /// `out` is queued when `answer` returns true.
    pub fn answer_all(&mut self, mut answer: impl FnMut(&[u8], SocketAddr, &mut Vec<u8>) -> bool) {
        for (i, &(len, from)) in self.received.iter().enumerate() {
            let packet = &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len];
            let before = self.replies.len();
            if answer(packet, from, &mut self.replies) {
                self.reply_ends.push((self.replies.len(), from));
            } else {
                self.replies.truncate(before);
            }
        }
    }

    pub fn replies_left(&self) -> bool {
        self.sent < self.reply_ends.len()
    }

    /// Sends some of the queued answers; `WouldBlock` when the socket's buffer is full.
    pub fn send(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let start = match self.sent {
            0 => 0,
            i => self.reply_ends[i - 1].0,
        };
        let mut from = start;
        let mut out: [(&[u8], SocketAddr); BATCH] = [(&[], SocketAddr::from(([0; 4], 0))); BATCH];
        let mut n = 0;
        for &(end, to) in self.reply_ends[self.sent..].iter().take(BATCH) {
            out[n] = (&self.replies[from..end], to);
            from = end;
            n += 1;
        }
        let done = socket.try_io(tokio::io::Interest::WRITABLE, || sys::send(socket, &out[..n]))?;
        self.sent += done.max(1).min(n);
        Ok(())
    }

    /// Gives up the next answer (its destination refused it).
    pub fn skip_reply(&mut self) {
        self.sent += 1;
    }

    pub fn clear_replies(&mut self) {
        self.replies.clear();
        self.reply_ends.clear();
        self.sent = 0;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod sys {
    //! `recvmmsg` / `sendmmsg`. The message headers point into arrays on this stack frame and
    //! into the caller's buffers, all of which outlive the call; the kernel writes only into
    //! the receive buffers and address slots it was given, within the lengths it was given.

    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use super::{BATCH, MAX_DATAGRAM};

    pub fn recv(
        socket: &impl AsRawFd,
        bufs: &mut [u8],
        out: &mut Vec<(usize, SocketAddr)>,
    ) -> io::Result<()> {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let slots = bufs.chunks_exact_mut(MAX_DATAGRAM);
        let mut n = 0;
        for (((slot, iov), hdr), name) in slots.zip(&mut iovs).zip(&mut hdrs).zip(&mut names) {
            *iov = libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot.len() };
            hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            n += 1;
        }
        // SAFETY: `n` headers are initialised above, each with one iovec of `MAX_DATAGRAM`
        // bytes inside `bufs` and a `sockaddr_storage` slot with its true length.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        for (hdr, name) in hdrs.iter().zip(&names).take(got as usize) {
            // A datagram from a family we cannot answer (none on an IP socket) is skipped.
            if let Some(from) = from_storage(name) {
                out.push(((hdr.msg_len as usize).min(MAX_DATAGRAM), from));
            }
        }
        Ok(())
    }

    /// Sends `msgs` in one call; returns how many went (at least one, or an error about the
    /// first).
    pub fn send(socket: &impl AsRawFd, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        // SAFETY: as in `recv`.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let n = msgs.len().min(BATCH);
        for (i, (data, to)) in msgs.iter().take(n).enumerate() {
            let len = to_storage(to, &mut names[i]);
            // The kernel only reads through this pointer (sendmmsg).
            iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
            let hdr = &mut hdrs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = len;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: `n` headers are initialised above; each points to one iovec over a live
        // slice of `msgs` and to an address of the stated length.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), n as _, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match libc::c_int::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in, which fits in sockaddr_storage.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6, which fits in sockaddr_storage.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }

    fn to_storage(addr: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
                let out =
                    unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                out.sin_family = libc::AF_INET as libc::sa_family_t;
                out.sin_port = a.port().to_be();
                out.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is aligned for it.
                let out = unsafe {
                    &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                out.sin6_port = a.port().to_be();
                out.sin6_flowinfo = a.flowinfo();
                out.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
                out.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn addresses_round_trip() {
            for addr in ["192.0.2.7:6881", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:1"] {
                let addr: SocketAddr = addr.parse().unwrap();
                // SAFETY: all-zero is a valid sockaddr_storage.
                let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                to_storage(&addr, &mut s);
                assert_eq!(from_storage(&s), Some(addr));
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod sys {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    use super::MAX_DATAGRAM;

    pub fn recv(
        socket: &UdpSocket,
        bufs: &mut [u8],
        out: &mut Vec<(usize, SocketAddr)>,
    ) -> io::Result<()> {
        for slot in bufs.chunks_exact_mut(MAX_DATAGRAM) {
            match socket.try_recv_from(slot) {
                Ok((n, from)) => out.push((n, from)),
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(())
    }

    pub fn send(socket: &UdpSocket, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        for (i, (data, to)) in msgs.iter().enumerate() {
            if let Err(e) = socket.try_send_to(data, *to) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(msgs.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn answers_more_datagrams_than_one_batch_holds() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to, me) = (server.local_addr().unwrap(), client.local_addr().unwrap());
        let total = BATCH + 8;
        for i in 0..total {
            client.send_to(&[i as u8; 3], to).await.unwrap();
        }
        let mut batch = Batch::new();
        let mut seen = 0;
        while seen < total {
            server.readable().await.unwrap();
            let n = match batch.recv(&server) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("recv: {e}"),
            };
            assert!(n <= BATCH);
            // Odd packets get no answer: what they appended must not go out.
            batch.answer_all(|packet, from, out| {
                assert_eq!(from, me);
                out.extend_from_slice(&[packet[0], packet.len() as u8]);
                packet[0] % 2 == 0
            });
            while batch.replies_left() {
                batch.send(&server).unwrap();
            }
            batch.clear_replies();
            seen += n;
        }
        let mut got = Vec::new();
        for _ in 0..total / 2 {
            let mut buf = [0u8; 8];
            let recv = client.recv_from(&mut buf);
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(10), recv).await.unwrap().unwrap();
            assert_eq!((n, from, buf[1]), (2, to, 3));
            got.push(usize::from(buf[0]));
        }
        assert_eq!(got, (0..total).step_by(2).collect::<Vec<_>>());
    }
}
