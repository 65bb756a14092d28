//! The compact peer format shared by HTTP (BEP 23, BEP 7) and UDP (BEP 15) trackers: the
//! address bytes then the port, both in network order.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub const V4_LEN: usize = 6;
pub const V6_LEN: usize = 18;

/// One 6-byte IPv4 peer; `None` for a wrong length or port 0 (nobody listens there).
pub fn peer_v4(bytes: &[u8]) -> Option<SocketAddrV4> {
    let bytes: &[u8; V4_LEN] = bytes.try_into().ok()?;
    let [a, b, c, d, p0, p1] = *bytes;
    let port = u16::from_be_bytes([p0, p1]);
    (port != 0).then(|| SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
}

/// One 18-byte IPv6 peer; `None` for a wrong length or port 0.
pub fn peer_v6(bytes: &[u8]) -> Option<SocketAddrV6> {
    let (ip, port) = bytes.split_at_checked(16)?;
    let ip: [u8; 16] = ip.try_into().ok()?;
    let port: [u8; 2] = port.try_into().ok()?;
    let port = u16::from_be_bytes(port);
    (port != 0).then(|| SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
}

/// Appends the IPv4 peers of `peers` in compact form and returns how many were written.
pub fn write_v4(peers: &[SocketAddr], out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for peer in peers {
        if let SocketAddr::V4(p) = peer {
            out.extend_from_slice(&p.ip().octets());
            out.extend_from_slice(&p.port().to_be_bytes());
            n += 1;
        }
    }
    n
}

/// Appends the IPv6 peers of `peers` in compact form and returns how many were written.
pub fn write_v6(peers: &[SocketAddr], out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for peer in peers {
        if let SocketAddr::V6(p) = peer {
            out.extend_from_slice(&p.ip().octets());
            out.extend_from_slice(&p.port().to_be_bytes());
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families() {
        let peers: Vec<SocketAddr> =
            vec!["1.2.3.4:5".parse().unwrap(), "[2001:db8::7]:65535".parse().unwrap()];
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        assert_eq!(write_v4(&peers, &mut v4), 1);
        assert_eq!(write_v6(&peers, &mut v6), 1);
        assert_eq!(peer_v4(&v4).map(SocketAddr::V4), Some(peers[0]));
        assert_eq!(peer_v6(&v6).map(SocketAddr::V6), Some(peers[1]));
    }

    #[test]
    fn rejects_port_zero_and_wrong_lengths() {
        assert_eq!(peer_v4(&[1, 2, 3, 4, 0, 0]), None);
        assert_eq!(peer_v4(&[1, 2, 3, 4, 0]), None);
        assert_eq!(peer_v6(&[0; 18]), None);
        assert_eq!(peer_v6(&[1; 17]), None);
        assert_eq!(peer_v6(&[1; 19]), None);
    }
}
