//! The WebRTC endpoint's same-host rule, where it must not hold: a peer whose offer names
//! only this host's address but whose packets come from another address is dropped, and from
//! then on no offer's claim is trusted. A UDP relay on a second address of the namespace plays
//! the peer "elsewhere": another host reusing our private address, reached through a NAT.
//!
//! In a private network namespace (it needs an address that is neither loopback nor ours).

mod interop_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use interop_support::in_netns_unless;
use shoal::webrtc::{self, WebRtcConfig};
use tokio::net::UdpSocket;

/// Our endpoints' address in the namespace (shoal_testkit::netns).
const OURS: &str = "198.18.0.1";
/// Another address on the same link: not loopback, not our socket's.
const ELSEWHERE: &str = "198.18.0.2";

#[test]
fn a_peer_that_claims_this_host_but_sends_from_elsewhere_is_dropped() {
    let test = "a_peer_that_claims_this_host_but_sends_from_elsewhere_is_dropped";
    in_netns_unless(test, None, |_ws| {
        let added = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ELSEWHERE}/24"), "dev", "v0"])
            .status()
            .expect("runs ip");
        assert!(added.success(), "ip addr add {ELSEWHERE}");
        tokio::runtime::Runtime::new().unwrap().block_on(claims_are_checked());
    });
}

async fn claims_are_checked() {
    let config = WebRtcConfig {
        bind: format!("{OURS}:0").parse().unwrap(),
        connect_timeout: Duration::from_secs(10),
        ..WebRtcConfig::default()
    };
    let answerer = webrtc::start(&config).await.expect("endpoint starts");

    // First attempt: the offer names only OURS, the packets come from ELSEWHERE.
    let first = connect_through_relay(&config, &answerer).await;
    match first.opened {
        Ok(_) => panic!("a peer that claimed this host and sent from elsewhere was kept"),
        Err(err) => assert!(err.contains("not on this host"), "{err}"),
    }

    // The rule is off for good: the same claim now gets the configured size, and connects.
    let second = connect_through_relay(&config, &answerer).await;
    let mut channel = second.opened.expect("the second attempt connects");
    let mut far_end = second.offerer_channel.expect("the offerer's channel");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = vec![7u8; 256 * 1024];
    let mut got = vec![0u8; data.len()];
    let (wrote, read) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(channel.write_all(&data), far_end.read_exact(&mut got))
    })
    .await
    .expect("the data crosses in time");
    wrote.expect("writes");
    read.expect("reads");
    assert!(got == data, "the bytes through the relay differ");
    let sent = second.largest.load(Ordering::Relaxed);
    assert!(sent <= MOST, "the answerer's largest datagram: {sent} bytes");
}

/// The largest datagram at the default size: str0m aims at 1150 bytes and stays under its
/// warning threshold, 1280.
const MOST: usize = 1280;

/// One connection attempt through [`relay`].
struct Attempt {
    /// The answerer's channel, or why it failed.
    opened: Result<webrtc::DataChannel, String>,
    /// The offerer's end of the channel, when it opened.
    offerer_channel: Option<webrtc::DataChannel>,
    /// The largest datagram the answerer sent.
    largest: Arc<AtomicUsize>,
    /// Kept so that the offerer's side lives as long as the attempt.
    _offerer: webrtc::Endpoint,
}

/// A fresh offerer reaches `answerer` through a relay: the offer's candidate is rewritten to
/// a socket on OURS, and what the offerer sends reaches the answerer from ELSEWHERE.
async fn connect_through_relay(config: &WebRtcConfig, answerer: &webrtc::Endpoint) -> Attempt {
    let offerer = webrtc::start(config).await.expect("endpoint starts");
    let claimed = UdpSocket::bind(format!("{OURS}:0")).await.unwrap();
    let elsewhere = UdpSocket::bind(format!("{ELSEWHERE}:0")).await.unwrap();
    let facing_offerer = UdpSocket::bind(format!("{OURS}:0")).await.unwrap();
    let (claimed_addr, facing_addr) =
        (claimed.local_addr().unwrap(), facing_offerer.local_addr().unwrap());
    let largest = Arc::new(AtomicUsize::new(0));
    tokio::spawn(relay(claimed, elsewhere, facing_offerer, offerer.local_addr(), largest.clone()));

    let offer = offerer.create_offer().await.expect("offer");
    let sdp = redirect(&offer.sdp, offerer.local_addr(), claimed_addr);
    let answer = answerer.accept_offer(sdp).await.expect("answer");
    let sdp = redirect(&answer.sdp, answerer.local_addr(), facing_addr);
    offerer.accept_answer(offer.id, sdp).await.expect("answer accepted");
    let opened = tokio::time::timeout(Duration::from_secs(15), answer.opened)
        .await
        .expect("settles in time")
        .expect("a result")
        .map_err(|e| e.to_string());
    let offerer_channel = match opened {
        Ok(_) => {
            let theirs = tokio::time::timeout(Duration::from_secs(15), offer.opened).await;
            Some(theirs.expect("opens in time").expect("a result").expect("the offerer's channel"))
        }
        Err(_) => None,
    };
    Attempt { opened, offerer_channel, largest, _offerer: offerer }
}

/// Forwards the answerer's datagrams (to `claimed` or `elsewhere`) to the offerer from
/// `facing_offerer`, and the offerer's to the answerer from `elsewhere`.
async fn relay(
    claimed: UdpSocket,
    elsewhere: UdpSocket,
    facing_offerer: UdpSocket,
    offerer: SocketAddr,
    largest: Arc<AtomicUsize>,
) {
    let (mut a, mut b, mut c) = (vec![0u8; 65_536], vec![0u8; 65_536], vec![0u8; 65_536]);
    let mut answerer: Option<SocketAddr> = None;
    loop {
        tokio::select! {
            got = claimed.recv_from(&mut a) => {
                let Ok((n, from)) = got else { return };
                answerer = Some(from);
                largest.fetch_max(n, Ordering::Relaxed);
                let _ = facing_offerer.send_to(&a[..n], offerer).await;
            }
            got = elsewhere.recv_from(&mut b) => {
                let Ok((n, from)) = got else { return };
                answerer = Some(from);
                largest.fetch_max(n, Ordering::Relaxed);
                let _ = facing_offerer.send_to(&b[..n], offerer).await;
            }
            got = facing_offerer.recv_from(&mut c) => {
                let Ok((n, _)) = got else { return };
                if let Some(to) = answerer {
                    let _ = elsewhere.send_to(&c[..n], to).await;
                }
            }
        }
    }
}

/// Points the `a=candidate` line for `from` at `to`.
fn redirect(sdp: &str, from: SocketAddr, to: SocketAddr) -> String {
    let (old, new) =
        (format!(" {} {} typ", from.ip(), from.port()), format!(" {} {} typ", to.ip(), to.port()));
    assert!(sdp.contains(&old), "no candidate for {from} in:\n{sdp}");
    sdp.replace(&old, &new)
}
