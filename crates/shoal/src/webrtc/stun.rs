//! STUN binding requests (RFC 5389) to learn the address a STUN server sees us at, for the
//! server-reflexive candidate. The first is made on the endpoint's socket before its task
//! starts ([`public_address`]), so the offers of a torrent announced at once already carry
//! it; from then on the endpoint's task asks again every [`REFRESH`] ([`StunRefresh`]) on
//! the same socket, which keeps the NAT's mapping for it alive and notices when our public
//! address changes (the router got a new one) or appears (the server did not answer at first;
//! a server name that does not resolve at start turns STUN off).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::WebRtcError;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAGIC_COOKIE: u32 = 0x2112_a442;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;
/// Waits before each retransmission (RFC 5389 starts at 500 ms and doubles).
const RETRIES: [Duration; 3] =
    [Duration::from_millis(500), Duration::from_millis(1000), Duration::from_millis(2000)];
/// How often the endpoint asks again. Many NATs forget an idle UDP mapping after 30 s (Linux's
/// conntrack among them), and a forgotten mapping may come back on another port: asking more
/// often than that keeps the one our candidate names. 20 bytes each way per interval.
pub(super) const REFRESH: Duration = Duration::from_secs(25);

/// The STUN server `server` (`host:port`) at an address of `local`'s family.
pub(super) async fn resolve(server: &str, local: SocketAddr) -> Result<SocketAddr, WebRtcError> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| WebRtcError::Stun(format!("cannot resolve {server}: {e}")))?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| WebRtcError::Stun(format!("{server} has no address of our family")))
}

/// Asks the server at `target` for our public address, retransmitting as RFC 5389 says.
pub(super) async fn public_address(
    socket: &UdpSocket,
    target: SocketAddr,
) -> Result<SocketAddr, WebRtcError> {
    let transaction: [u8; 12] = rand::random();
    let request = binding_request(&transaction);
    let mut buf = [0u8; 1024];
    for wait in RETRIES {
        socket.send_to(&request, target).await.map_err(WebRtcError::Socket)?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            let Ok((n, from)) = received else { continue };
            if from != target {
                continue;
            }
            if let Some(addr) = parse_binding_success(&buf[..n], &transaction) {
                return Ok(addr);
            }
        }
    }
    Err(WebRtcError::Stun(format!("no answer from {target}")))
}

/// The endpoint's periodic binding request, sans IO: the task sends what
/// [`StunRefresh::poll_request`] gives it and hands over datagrams from the server.
pub(super) struct StunRefresh {
    server: SocketAddr,
    /// The outstanding request's transaction id; answers to older ones are ignored.
    transaction: [u8; 12],
    next_at: Instant,
    public: Option<SocketAddr>,
}

/// What a datagram from the STUN server's address was.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StunAnswer {
    /// Not an answer to our request: let the endpoint treat it as any datagram.
    NotOurs,
    /// Our address as before.
    Unchanged,
    /// Our public address is now `new` (it was `old`).
    Changed { old: Option<SocketAddr>, new: SocketAddr },
}

impl StunRefresh {
    /// Refreshes with `server`; `public` is what the first request found, if it was answered.
    pub(super) fn new(server: SocketAddr, public: Option<SocketAddr>, now: Instant) -> Self {
        StunRefresh { server, transaction: rand::random(), next_at: now + REFRESH, public }
    }

    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Our public address as last reported.
    pub(super) fn public(&self) -> Option<SocketAddr> {
        self.public
    }

    /// When the next request is due.
    pub(super) fn due(&self) -> Instant {
        self.next_at
    }

    /// The request to send now, if one is due. An unanswered request is not retransmitted:
    /// the next one follows after [`REFRESH`], which is soon enough for a mapping's lifetime.
    pub(super) fn poll_request(&mut self, now: Instant) -> Option<[u8; HEADER_LEN]> {
        if now < self.next_at {
            return None;
        }
        self.transaction = rand::random();
        self.next_at = now + REFRESH;
        Some(binding_request(&self.transaction))
    }

    /// A datagram that came from the server's address.
    pub(super) fn on_datagram(&mut self, data: &[u8]) -> StunAnswer {
        let Some(seen) = parse_binding_success(data, &self.transaction) else {
            return StunAnswer::NotOurs;
        };
        // One answer per transaction: a duplicate of it is not news.
        self.transaction = rand::random();
        if self.public == Some(seen) {
            return StunAnswer::Unchanged;
        }
        let old = self.public.replace(seen);
        StunAnswer::Changed { old, new: seen }
    }
}

fn binding_request(transaction: &[u8; 12]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // length 0: no attributes
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(transaction);
    out
}

/// The mapped address of a binding success for `transaction`; `None` for anything else.
fn parse_binding_success(msg: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    let header = msg.get(..HEADER_LEN)?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_SUCCESS
        || header[4..8] != MAGIC_COOKIE.to_be_bytes()
        || header[8..20] != transaction[..]
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = msg.get(HEADER_LEN..HEADER_LEN + len)?;
    let mut mapped = None;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen)?;
        match kind {
            ATTR_XOR_MAPPED_ADDRESS => return decode_address(value, Some(transaction)),
            ATTR_MAPPED_ADDRESS => mapped = decode_address(value, None),
            _ => {}
        }
        // attributes are padded to 4 bytes
        let step = 4 + alen.div_ceil(4) * 4;
        attrs = attrs.get(step..).unwrap_or(&[]);
    }
    mapped
}

/// MAPPED-ADDRESS, or XOR-MAPPED-ADDRESS when `xor` carries the transaction id.
fn decode_address(value: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    if let Some(t) = xor {
        key[4..].copy_from_slice(t);
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let unmask = |bytes: &[u8]| -> Vec<u8> {
        bytes.iter().zip(key.iter()).map(|(b, k)| if xor.is_some() { b ^ k } else { *b }).collect()
    };
    let ip = match family {
        0x01 => {
            let raw = unmask(value.get(4..8)?);
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        }
        0x02 => {
            let raw: [u8; 16] = unmask(value.get(4..20)?).try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(raw))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding success for `transaction` carrying one 8-byte address attribute.
    fn binding_success(transaction: &[u8; 12], attribute: u16, value: [u8; 8]) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
        msg.extend_from_slice(&12u16.to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        msg.extend_from_slice(transaction);
        msg.extend_from_slice(&attribute.to_be_bytes());
        msg.extend_from_slice(&8u16.to_be_bytes());
        msg.extend_from_slice(&value);
        msg
    }

    /// A binding success as RFC 5769 §2.2 builds it: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
    fn success(transaction: &[u8; 12]) -> Vec<u8> {
        let value = [0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        binding_success(transaction, ATTR_XOR_MAPPED_ADDRESS, value)
    }

    #[test]
    fn decodes_the_rfc5769_mapped_address() {
        let t = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];
        let addr = parse_binding_success(&success(&t), &t).unwrap();
        assert_eq!(addr, "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn ignores_other_transactions_and_truncated_messages() {
        let t = [7u8; 12];
        let msg = success(&t);
        assert_eq!(parse_binding_success(&msg, &[8u8; 12]), None);
        for cut in 0..msg.len() {
            assert_eq!(parse_binding_success(&msg[..cut], &t), None, "cut at {cut}");
        }
        let mut lying = msg.clone();
        lying[3] = 200; // length beyond the datagram
        assert_eq!(parse_binding_success(&lying, &t), None);
    }

    /// A binding success for `transaction` with a plain MAPPED-ADDRESS of `addr`.
    fn mapped_success(transaction: &[u8; 12], addr: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = addr else { panic!("IPv4 only") };
        let [p0, p1] = v4.port().to_be_bytes();
        let [a, b, c, d] = v4.ip().octets();
        binding_success(transaction, ATTR_MAPPED_ADDRESS, [0, 1, p0, p1, a, b, c, d])
    }

    #[tokio::test]
    async fn asks_a_server_on_loopback() {
        // A one-shot responder that answers with the address it saw.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let responder = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(n, HEADER_LEN);
            let t: [u8; 12] = buf[8..20].try_into().unwrap();
            server.send_to(&mapped_success(&t, from), from).await.unwrap();
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let public = public_address(&client, server_addr).await.unwrap();
        assert_eq!(public, client.local_addr().unwrap());
        responder.await.unwrap();
    }

    /// The transaction id of a request [`StunRefresh::poll_request`] made.
    fn transaction_of(request: &[u8; HEADER_LEN]) -> [u8; 12] {
        request[8..20].try_into().unwrap()
    }

    #[test]
    fn refresh_asks_every_interval_and_reports_changes() {
        let server: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let first: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let moved: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let t0 = Instant::now();
        let mut refresh = StunRefresh::new(server, Some(first), t0);
        assert_eq!(refresh.due(), t0 + REFRESH);
        assert!(refresh.poll_request(t0 + REFRESH / 2).is_none(), "not due yet");

        let request = refresh.poll_request(t0 + REFRESH).expect("due");
        assert!(refresh.poll_request(t0 + REFRESH).is_none(), "one request per interval");
        assert_eq!(refresh.due(), t0 + REFRESH * 2);
        let t = transaction_of(&request);
        assert_eq!(refresh.on_datagram(&mapped_success(&t, first)), StunAnswer::Unchanged);

        let t = transaction_of(&refresh.poll_request(t0 + REFRESH * 2).expect("due again"));
        let answer = mapped_success(&t, moved);
        assert_eq!(
            refresh.on_datagram(&answer),
            StunAnswer::Changed { old: Some(first), new: moved }
        );
        assert_eq!(refresh.on_datagram(&answer), StunAnswer::NotOurs, "a duplicate is not news");
    }

    #[test]
    fn refresh_ignores_stale_and_foreign_answers() {
        let server: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let found: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let t0 = Instant::now();
        // The first request went unanswered: no address yet.
        let mut refresh = StunRefresh::new(server, None, t0);
        let old = transaction_of(&refresh.poll_request(t0 + REFRESH).unwrap());
        let new = transaction_of(&refresh.poll_request(t0 + REFRESH * 2).unwrap());
        assert_eq!(refresh.on_datagram(&mapped_success(&old, found)), StunAnswer::NotOurs);
        assert_eq!(refresh.on_datagram(b"\x16\xfe\xfd not STUN"), StunAnswer::NotOurs);
        assert_eq!(refresh.on_datagram(&[]), StunAnswer::NotOurs);
        assert_eq!(
            refresh.on_datagram(&mapped_success(&new, found)),
            StunAnswer::Changed { old: None, new: found },
            "a late first answer"
        );
    }
}
