//! Arbitrary datagrams to a uTP endpoint (BEP 29) that has one connection out to the sender
//! and accepts others: each input is a series of datagrams (a length byte, then that many
//! bytes), with the clock moving on between them. Beyond no panic, OOM or hang: the
//! connection's invariants (checked in debug builds, as fuzz builds are) hold throughout, and
//! what the application reads never exceeds the receive buffer.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_proto::time::Instant;
use shoal_proto::utp::{Endpoint, EndpointLimits, UtpConfig};

fuzz_target!(|data: &[u8]| {
    let peer: SocketAddr = ([10, 0, 0, 2], 6881).into();
    let limits = EndpointLimits { max_connections: 16, max_backlog: 4 };
    let mut endpoint = Endpoint::new(UtpConfig::default(), limits, 7);
    let mut now = Instant::ZERO;
    let Some(id) = endpoint.connect(now, peer) else { return };
    let mut out = Vec::new();
    let mut read = BytesMut::new();
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        endpoint.handle(now, peer, datagram);
        if let Some(conn) = endpoint.conn(id) {
            conn.write(&[0x5a; 3000]);
            read.clear();
            conn.read(&mut read, usize::MAX);
            assert!(read.len() <= UtpConfig::default().recv_buffer);
        }
        while endpoint.accept().is_some() {}
        while endpoint.poll_transmit(now, &mut out).is_some() {}
        now = now + Duration::from_millis(u64::from(len as u8 % 64) * 50);
        endpoint.handle_timeout(now);
        while endpoint.poll_transmit(now, &mut out).is_some() {}
    }
});
