//! Loopback addresses and ports for peers under test.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so every peer can have an address of its own.
//! That matters: Transmission and trackers tell peers apart by IP alone, and a distinct
//! address per peer keeps tests that run in parallel (threads or processes) out of each
//! other's way.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

/// A loopback address not handed out before by this process: `127.X.Y.Z`, with `X` derived
/// from the process id (so that two test binaries running at once differ) and never
/// `127.0.0.1`, which untracked programs commonly use.
pub fn loopback_ip() -> Ipv4Addr {
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    // 2..=254 in the last octet, carrying into the third
    let z = 2 + (n % 253) as u8;
    let y = ((n / 253) % 256) as u8;
    let x = 1 + (std::process::id() % 254) as u8;
    Ipv4Addr::new(127, x, y, z)
}

/// A port that is free for both TCP and UDP on `ip` right now (uTP and UDP trackers share the
/// TCP port number). The kernel picks it; another process could still take it before the
/// caller binds, which distinct addresses per peer make unlikely.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind((ip, 0))
            .map_err(|e| Error::io(format!("binding a TCP port on {ip}"), e))?;
        let port = tcp.local_addr().map_err(|e| Error::io("reading a bound address", e))?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Setup(format!("no port free for both TCP and UDP on {ip}")))
}

/// A fresh loopback address with a free port on it.
pub fn free_addr() -> Result<SocketAddr> {
    let ip = loopback_ip();
    Ok(SocketAddr::from((ip, free_port(ip)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ips_are_distinct_and_never_the_usual_one() {
        let ips: Vec<_> = (0..600).map(|_| loopback_ip()).collect();
        let mut unique = ips.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ips.len());
        for ip in ips {
            assert!(ip.is_loopback());
            assert_ne!(ip, Ipv4Addr::LOCALHOST);
            assert!(ip.octets()[3] >= 2 && ip.octets()[3] <= 254, "{ip}");
        }
    }

    #[test]
    fn free_addr_can_be_bound() {
        let addr = free_addr().unwrap();
        TcpListener::bind(addr).unwrap();
        UdpSocket::bind(addr).unwrap();
    }
}
