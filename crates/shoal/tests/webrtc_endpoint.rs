//! Two of our WebRTC endpoints on loopback: offer, answer, a data channel as a byte stream in
//! both directions, back-pressure, and nothing left behind by failed attempts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use shoal::webrtc::{self, Endpoint, WebRtcConfig, WebRtcError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

fn config() -> WebRtcConfig {
    WebRtcConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        connect_timeout: Duration::from_secs(10),
        ..WebRtcConfig::default()
    }
}

async fn endpoint() -> Endpoint {
    webrtc::start(&config()).await.expect("endpoint starts")
}

/// Connects `a` (offerer) to `b` (answerer) and returns both ends of the channel.
async fn connect(a: &Endpoint, b: &Endpoint) -> (webrtc::DataChannel, webrtc::DataChannel) {
    let offer = a.create_offer().await.expect("offer");
    assert!(offer.sdp.contains("a=candidate"), "the offer carries our candidate:\n{}", offer.sdp);
    let answer = b.accept_offer(offer.sdp.clone()).await.expect("answer");
    a.accept_answer(offer.id, answer.sdp.clone()).await.expect("answer accepted");
    let limit = Duration::from_secs(15);
    let ours = tokio::time::timeout(limit, offer.opened).await.expect("opens in time");
    let theirs = tokio::time::timeout(limit, answer.opened).await.expect("opens in time");
    (ours.unwrap().expect("offerer's channel"), theirs.unwrap().expect("answerer's channel"))
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    common::pseudo_random(len, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_carries_a_byte_stream_both_ways() {
    let (a, b) = (endpoint().await, endpoint().await);
    let (mut x, mut y) = connect(&a, &b).await;

    // Both directions at once; odd sizes so that writes never line up with messages.
    let up = payload(3 * 1024 * 1024 + 7, 1);
    let down = payload(1024 * 1024 + 13, 2);
    let (up2, down2) = (up.clone(), down.clone());
    let writer_x = tokio::spawn(async move {
        for chunk in up2.chunks(100_003) {
            x.write_all(chunk).await.unwrap();
        }
        let mut got = vec![0u8; down2.len()];
        x.read_exact(&mut got).await.unwrap();
        assert!(got == down2, "bytes from the answerer differ");
        x
    });
    let mut got = vec![0u8; up.len()];
    y.write_all(&down).await.unwrap();
    y.read_exact(&mut got).await.unwrap();
    assert!(got == up, "bytes from the offerer differ");
    let mut x = writer_x.await.unwrap();

    // A close is the end of the stream for the other side.
    x.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), y.read_to_end(&mut rest)).await;
    assert!(read.expect("EOF in time").is_ok());
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtu_is_bounded_and_both_extremes_carry_data() {
    for bad in [0, 575, 1501, 65_536] {
        let err = webrtc::start(&WebRtcConfig { mtu: bad, ..config() }).await.err();
        assert!(matches!(err, Some(WebRtcError::Mtu(m)) if m == bad), "mtu {bad}: {err:?}");
    }
    // Endpoints with different MTUs talk to each other: each side's packets fit its own.
    let small = webrtc::start(&WebRtcConfig { mtu: 576, ..config() }).await.expect("starts");
    let large = webrtc::start(&WebRtcConfig { mtu: 1500, ..config() }).await.expect("starts");
    let (x, y) = connect(&small, &large).await;
    let (mut x, _y) = both_ways(x, y, 512 * 1024 + 5, 512 * 1024 + 9).await;
    x.shutdown().await.unwrap();
}

/// Sends `up` random bytes from `x` to `y` and `down` from `y` to `x` at once, checks both,
/// and hands the channels back (dropping one aborts it while the other may still read).
async fn both_ways(
    mut x: webrtc::DataChannel,
    mut y: webrtc::DataChannel,
    up: usize,
    down: usize,
) -> (webrtc::DataChannel, webrtc::DataChannel) {
    let (up, down) = (payload(up, up as u64), payload(down, down as u64));
    let (up2, down2) = (up.clone(), down.clone());
    let x_side = tokio::spawn(async move {
        x.write_all(&up2).await.unwrap();
        let mut got = vec![0u8; down2.len()];
        x.read_exact(&mut got).await.unwrap();
        assert!(got == down2, "bytes from the second side differ");
        x
    });
    tokio::time::timeout(Duration::from_secs(30), y.write_all(&down))
        .await
        .expect("in time")
        .unwrap();
    let mut got = vec![0u8; up.len()];
    tokio::time::timeout(Duration::from_secs(30), y.read_exact(&mut got))
        .await
        .expect("in time")
        .unwrap();
    assert!(got == up, "bytes from the first side differ");
    let x = tokio::time::timeout(Duration::from_secs(30), x_side).await.expect("in time").unwrap();
    (x, y)
}

/// Points the `a=candidate` line for `from` at `to`.
fn redirect_candidate(sdp: &str, from: SocketAddr, to: SocketAddr) -> String {
    let (old, new) =
        (format!(" {} {} typ", from.ip(), from.port()), format!(" {} {} typ", to.ip(), to.port()));
    assert!(sdp.contains(&old), "no candidate for {from} in:\n{sdp}");
    sdp.replace(&old, &new)
}

/// Largest datagram seen in each direction by [`relay`].
#[derive(Default)]
struct Largest {
    to_offerer: std::sync::atomic::AtomicUsize,
    to_answerer: std::sync::atomic::AtomicUsize,
}

/// A UDP relay between two endpoints that each see only the relay: `facing_answerer` stands
/// in for the offerer, `facing_offerer` for the answerer. Records datagram sizes.
async fn relay(
    facing_answerer: tokio::net::UdpSocket,
    facing_offerer: tokio::net::UdpSocket,
    offerer: SocketAddr,
    largest: std::sync::Arc<Largest>,
) {
    use std::sync::atomic::Ordering;
    let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    let mut answerer: Option<SocketAddr> = None;
    loop {
        tokio::select! {
            got = facing_answerer.recv_from(&mut a) => {
                let Ok((n, from)) = got else { return };
                answerer = Some(from);
                largest.to_offerer.fetch_max(n, Ordering::Relaxed);
                let _ = facing_offerer.send_to(&a[..n], offerer).await;
            }
            got = facing_offerer.recv_from(&mut b) => {
                let Ok((n, _)) = got else { return };
                largest.to_answerer.fetch_max(n, Ordering::Relaxed);
                if let Some(to) = answerer {
                    let _ = facing_answerer.send_to(&b[..n], to).await;
                }
            }
        }
    }
}

/// An answerer whose remote is on this host sends the largest datagrams str0m allows; the
/// offerer, which could not know who would answer, keeps the configured size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_this_host_gets_full_size_datagrams() {
    let (from_answerer, from_offerer) = largest_datagrams(config()).await;
    // str0m aims at the configured size; its warning threshold is the hard line here.
    let most = WebRtcConfig::default().mtu.max(str0m::DATAGRAM_MTU_WARN);
    assert!(from_offerer <= most, "the offerer sent {from_offerer} bytes, over {most}");
    assert!(
        from_answerer > most && from_answerer <= 1500,
        "the answerer's largest datagram was {from_answerer} bytes"
    );
}

/// With the rule off (what an explicit `--webrtc-mtu` does), local peers get the configured
/// size like everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_host_rule_can_be_turned_off() {
    let config = WebRtcConfig { full_size_on_this_host: false, ..config() };
    let (from_answerer, _) = largest_datagrams(config).await;
    let most = WebRtcConfig::default().mtu.max(str0m::DATAGRAM_MTU_WARN);
    assert!(from_answerer <= most, "the answerer sent {from_answerer} bytes, over {most}");
}

/// Connects an offerer to an answerer made with `answerer_config` through [`relay`], moves
/// data both ways, and returns the largest datagram each sent (answerer's, offerer's).
async fn largest_datagrams(answerer_config: WebRtcConfig) -> (usize, usize) {
    let a = endpoint().await;
    let b = webrtc::start(&answerer_config).await.expect("endpoint starts");
    let facing_answerer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let facing_offerer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (stand_in_a, stand_in_b) =
        (facing_answerer.local_addr().unwrap(), facing_offerer.local_addr().unwrap());
    let largest = std::sync::Arc::new(Largest::default());
    let relay =
        tokio::spawn(relay(facing_answerer, facing_offerer, a.local_addr(), largest.clone()));

    let offer = a.create_offer().await.expect("offer");
    let answer = b
        .accept_offer(redirect_candidate(&offer.sdp, a.local_addr(), stand_in_a))
        .await
        .expect("answer");
    a.accept_answer(offer.id, redirect_candidate(&answer.sdp, b.local_addr(), stand_in_b))
        .await
        .expect("answer accepted");
    let limit = Duration::from_secs(15);
    let x = tokio::time::timeout(limit, offer.opened).await.expect("opens").unwrap().unwrap();
    let y = tokio::time::timeout(limit, answer.opened).await.expect("opens").unwrap().unwrap();
    let _channels = both_ways(x, y, 256 * 1024 + 3, 256 * 1024 + 5).await;
    relay.abort();

    use std::sync::atomic::Ordering;
    (largest.to_offerer.load(Ordering::Relaxed), largest.to_answerer.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_transfer_is_intact() {
    let (a, b) = (endpoint().await, endpoint().await);
    let (mut x, mut y) = connect(&a, &b).await;
    let len = 64 * 1024 * 1024;
    let data = payload(len, 3);
    let expected = Sha1::digest(&data);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(16 * 1024 + 13) {
            x.write_all(chunk).await.unwrap();
        }
        x
    });
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0usize;
    while read < len {
        let n = y.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended after {read} bytes");
        hasher.update(&buf[..n]);
        read += n;
    }
    let elapsed = started.elapsed();
    assert_eq!(hasher.finalize(), expected);
    let _x = writer.await.unwrap();
    eprintln!(
        "64 MiB over a loopback data channel in {:.2} s: {:.1} MB/s",
        elapsed.as_secs_f64(),
        len as f64 / elapsed.as_secs_f64() / 1e6
    );
}

/// SCTP acknowledges what str0m has parsed, whether or not we read it, so a receiver cannot
/// push back on a sender the way TCP does. A peer only sends what we asked for; one that
/// sends far more while we do not read is dropped, which bounds what it costs us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_floods_a_reader_that_does_not_read_is_cut_off() {
    let (a, b) = (endpoint().await, endpoint().await);
    let (mut x, y) = connect(&a, &b).await;
    let chunk = payload(256 * 1024, 4);
    let mut written = 0usize;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        // Bounded: 256 MiB is far past the inbound limit.
        for _ in 0..1024 {
            x.write_all(&chunk).await?;
            written += chunk.len();
        }
        Ok::<(), std::io::Error>(())
    })
    .await
    .expect("the flood ends in time");
    assert!(result.is_err(), "the flooding writer is cut off (wrote {written} bytes)");
    assert!(written < 128 * 1024 * 1024, "cut off early: {written} bytes");
    drop((x, y));
    let deadline = Instant::now() + Duration::from_secs(20);
    while (a.live_connections() > 0 || b.live_connections() > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((a.live_connections(), b.live_connections()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_and_unanswered_offers_leave_nothing_behind() {
    let (a, b) = (endpoint().await, endpoint().await);
    for garbage in ["", "v=0", "not sdp at all\r\n", &"a=x\r\n".repeat(10_000)] {
        let err = b.accept_offer(garbage.to_owned()).await.err().expect("refused");
        assert!(matches!(err, WebRtcError::Sdp(_)), "{err}");
    }
    // An answer for an offer that does not exist, and a garbage answer for one that does.
    let offer = a.create_offer().await.unwrap();
    let ghost = a.create_offer().await.unwrap();
    a.close(ghost.id);
    assert!(a.accept_answer(ghost.id, "v=0".into()).await.is_err());
    assert!(a.accept_answer(offer.id, "garbage".into()).await.is_err());
    assert!(offer.opened.await.unwrap().is_err(), "a bad answer ends the attempt");
    // Offers nobody answers expire.
    let mut pending = Vec::new();
    for _ in 0..20 {
        pending.push(a.create_offer().await.unwrap());
    }
    assert_eq!(a.live_connections(), 20);
    drop(pending);
    // Dropping the receivers does not cancel them by itself: expiry (10 s here) does.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.live_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.live_connections(), 0);
    assert_eq!(b.live_connections(), 0);
    // And the endpoints still work.
    let (mut x, mut y) = connect(&a, &b).await;
    x.write_all(b"still here").await.unwrap();
    let mut got = [0u8; 10];
    y.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"still here");
}
