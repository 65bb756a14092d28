//! One STUN binding request (RFC 5389) to learn the address a STUN server sees us at, for the
//! server-reflexive candidate. Run on the endpoint's socket before its task starts, so the
//! mapping a NAT made is the one peers will reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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

/// Asks `server` (`host:port`) for our public address.
pub(super) async fn public_address(
    socket: &UdpSocket,
    server: &str,
) -> Result<SocketAddr, WebRtcError> {
    let local = socket.local_addr().map_err(WebRtcError::Socket)?;
    let target = tokio::net::lookup_host(server)
        .await
        .map_err(|e| WebRtcError::Stun(format!("cannot resolve {server}: {e}")))?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| WebRtcError::Stun(format!("{server} has no address of our family")))?;
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
    Err(WebRtcError::Stun(format!("no answer from {server}")))
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

    /// A binding success as RFC 5769 §2.2 builds it: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
    fn success(transaction: &[u8; 12]) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
        msg.extend_from_slice(&12u16.to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        msg.extend_from_slice(transaction);
        msg.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
        msg.extend_from_slice(&8u16.to_be_bytes());
        msg.extend_from_slice(&[0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
        msg
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
            let mut msg = Vec::new();
            msg.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
            msg.extend_from_slice(&12u16.to_be_bytes());
            msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            msg.extend_from_slice(&t);
            msg.extend_from_slice(&ATTR_MAPPED_ADDRESS.to_be_bytes());
            msg.extend_from_slice(&8u16.to_be_bytes());
            let SocketAddr::V4(v4) = from else { panic!() };
            msg.extend_from_slice(&[0, 1]);
            msg.extend_from_slice(&v4.port().to_be_bytes());
            msg.extend_from_slice(&v4.ip().octets());
            server.send_to(&msg, from).await.unwrap();
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let public = public_address(&client, &server_addr.to_string()).await.unwrap();
        assert_eq!(public, client.local_addr().unwrap());
        responder.await.unwrap();
    }
}
