//! Hostile signalling and hostile WebRTC peers against a seeding session.
//!
//! The test plays the WebSocket tracker itself, so it can send the session anything a broken
//! or malicious tracker could: malformed SDP, offers for torrents the session never announced,
//! answers to offers it never made, garbage frames. Then it connects real WebRTC peers (our own
//! endpoint) that open the channel and send garbage, or nothing. The session must answer only
//! what deserves an answer, drop the rest, and end with no connection left; a well-behaved peer
//! must still get through afterwards. And a tracker that goes silent on an open connection is
//! noticed (the keepalive's unanswered ping) and left for a new connection.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shoal::webrtc::{self, WebRtcConfig};
use shoal::{AddTorrent, Session, SessionConfig, StorageTarget, TorrentHandle, TorrentSource};
use shoal_proto::create::TorrentBuilder;
use shoal_proto::metainfo::Metainfo;
use shoal_proto::wire::Handshake;
use shoal_proto::{InfoHash, PeerId};
use shoal_tracker_proto::ws::{
    decode_request, encode_announce_response, encode_offer, WsRequest, MAX_MESSAGE_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

mod common;

const STEP: Duration = Duration::from_secs(20);

fn rtc_config() -> WebRtcConfig {
    WebRtcConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        // Short, so the offers the session makes itself (never answered here) expire quickly.
        connect_timeout: Duration::from_secs(8),
        ..WebRtcConfig::default()
    }
}

/// The tracker side of one WebSocket connection, as this test drives it.
struct FakeTracker {
    ws: WebSocketStream<TcpStream>,
}

impl FakeTracker {
    async fn recv(&mut self) -> WsRequest {
        loop {
            let message = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("the session says something in time")
                .expect("the session stays connected")
                .expect("a readable frame");
            if let WsMessage::Text(text) = message {
                return decode_request(text.as_bytes()).expect("the session's JSON is valid");
            }
        }
    }

    async fn send(&mut self, text: String) {
        self.ws.send(WsMessage::text(text)).await.expect("send to the session");
    }

    /// Whatever the session sends within `wait`, stopping at an answer.
    async fn answer_within(&mut self, wait: Duration) -> Option<WsRequest> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let WsMessage::Text(text) = message {
                let request = decode_request(text.as_bytes()).expect("valid JSON");
                if matches!(request, WsRequest::Answer(_)) {
                    return Some(request);
                }
            }
        }
        None
    }
}

fn raw(json: serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.to_string()).unwrap()
}

/// A session seeding a small torrent, announced to the (fake) tracker at `url` only; what
/// must outlive the test's use of it, and the torrent's info hash.
struct Seeding {
    session: Session,
    torrent: TorrentHandle,
    info_hash: InfoHash,
    _dir: tempfile::TempDir,
}

async fn seeding_session(url: String) -> Seeding {
    let data = common::pseudo_random(300_000, 5);
    let builder = TorrentBuilder::single_file("x.bin", data.len() as u64).unwrap();
    let mut hasher = builder.piece_length(32 * 1024).start().unwrap();
    hasher.update(&data).unwrap();
    let meta = Metainfo::from_bytes(&hasher.finish().unwrap()).unwrap();
    let info_hash = meta.info_hash;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.bin"), &data).unwrap();

    let config =
        SessionConfig { listen: None, webrtc: Some(rtc_config()), ..SessionConfig::default() };
    let session = Session::new(config).await.unwrap();
    let torrent = session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta)),
            target: StorageTarget::Dir(dir.path().to_path_buf()),
            only_files: None,
            file_priorities: None,
            peers: vec![],
            extra_trackers: vec![url],
            web_seeds: vec![],
        })
        .unwrap();
    tokio::time::timeout(STEP, torrent.wait_complete()).await.unwrap().unwrap();
    Seeding { session, torrent, info_hash, _dir: dir }
}

/// A tracker whose connection stays open but that stops reading (a route gone dead under an
/// open TCP connection looks the same from our side: nothing comes back, not even a pong).
/// The session pings it after a quiet spell, gives up on it when no answer comes, reconnects
/// and rejoins, with offers. Without the keepalive it would wait for its next announce,
/// minutes away; the wait here is bounded below that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_goes_silent_is_left_and_rejoined() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let seeding = seeding_session(url).await;
    let (tcp, _) = tokio::time::timeout(STEP, listener.accept()).await.unwrap().unwrap();
    let mut tracker = FakeTracker { ws: tokio_tungstenite::accept_async(tcp).await.unwrap() };
    let WsRequest::Announce(first) = tracker.recv().await else { panic!("an announce first") };
    tracker.send(encode_announce_response(&seeding.info_hash, 120, 1, 0)).await;

    // From here on the old connection is held open and never read.
    let silent = tracker;
    let (tcp, _) = tokio::time::timeout(SILENT_TRACKER_WAIT, listener.accept())
        .await
        .expect("the session gives up on the silent tracker and reconnects")
        .unwrap();
    let mut tracker = FakeTracker { ws: tokio_tungstenite::accept_async(tcp).await.unwrap() };
    let WsRequest::Announce(rejoin) = tracker.recv().await else { panic!("it rejoins") };
    assert_eq!((rejoin.info_hash, rejoin.peer_id), (seeding.info_hash, first.peer_id));
    assert!(!rejoin.offers.is_empty(), "the rejoin carries offers");
    drop(silent);
    drop(seeding.torrent);
    drop(seeding.session);
}

/// Bound on noticing a silent tracker: its quiet spell and the ping's wait (45 s) with room
/// to spare, and below the two-minute announce interval that would otherwise be the next
/// time the session writes to it.
const SILENT_TRACKER_WAIT: Duration = Duration::from_secs(75);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signalling_and_peers_are_dropped_and_leave_nothing_behind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let Seeding { session, torrent, info_hash, _dir } = seeding_session(url).await;

    let (tcp, _) = tokio::time::timeout(STEP, listener.accept()).await.unwrap().unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let mut tracker = FakeTracker { ws };
    let WsRequest::Announce(announce) = tracker.recv().await else { panic!("an announce first") };
    assert_eq!(announce.info_hash, info_hash);
    assert!(!announce.offers.is_empty(), "the announce carries offers");
    let session_id = announce.peer_id;
    tracker.send(encode_announce_response(&info_hash, 120, 1, 0)).await;

    let hostile_id = PeerId(*b"-XX0001-hostilepeer!");
    let offer_id = [7u8; 20];

    // 1. Malformed SDP, a wrong type, an empty object: no answer.
    for bad in [
        raw(serde_json::json!({"type": "offer", "sdp": "v=0\r\nthis is not sdp\r\n"})),
        raw(serde_json::json!({"type": "answer", "sdp": "v=0\r\n"})),
        raw(serde_json::json!({})),
        raw(serde_json::json!({"type": "offer", "sdp": "a".repeat(40_000)})),
    ] {
        tracker.send(encode_offer(&info_hash, &hostile_id, &offer_id, &bad)).await;
    }
    // 2. A well-formed offer for a torrent the session never announced: no answer either.
    let stranger = webrtc::start(&rtc_config()).await.unwrap();
    let pending = stranger.create_offer().await.unwrap();
    let sdp = raw(serde_json::json!({"type": "offer", "sdp": pending.sdp}));
    tracker.send(encode_offer(&InfoHash([9; 20]), &hostile_id, &offer_id, &sdp)).await;
    // 3. Answers to offers the session never made, garbage JSON, a binary frame.
    let answer_for_nothing = format!(
        "{{\"action\":\"announce\",\"info_hash\":{},\"peer_id\":{},\"offer_id\":{},\"answer\":{{\"type\":\"answer\",\"sdp\":\"v=0\"}}}}",
        json_binary(&info_hash.0),
        json_binary(&hostile_id.0),
        json_binary(&[1u8; 20]),
    );
    tracker.send(answer_for_nothing).await;
    tracker.send("{not json".into()).await;
    tracker.send("[1,2,3]".into()).await;
    tracker.ws.send(WsMessage::binary(vec![0u8; 100])).await.unwrap();
    assert!(
        tracker.answer_within(Duration::from_secs(3)).await.is_none(),
        "nothing above deserves an answer"
    );
    // 4. A real answer with garbage SDP to one of the session's own offers: refused, and that
    //    offer is gone (the endpoint count drops once the others expire too; checked below).
    let first_offer = announce.offers[0].offer_id;
    let bad_answer = format!(
        "{{\"action\":\"announce\",\"info_hash\":{},\"peer_id\":{},\"offer_id\":{},\"answer\":{{\"type\":\"answer\",\"sdp\":\"garbage\"}}}}",
        json_binary(&info_hash.0),
        json_binary(&hostile_id.0),
        json_binary(&first_offer),
    );
    tracker.send(bad_answer).await;

    // 5. Real WebRTC peers that open a channel and then misbehave: half send garbage instead
    //    of a handshake, half send nothing at all. Each from its own socket, as browsers do.
    let rounds = 12;
    let mut channels = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..rounds {
        let hostile = webrtc::start(&rtc_config()).await.unwrap();
        let pending = hostile.create_offer().await.unwrap();
        let id = [i as u8 + 100; 20];
        let sdp = raw(serde_json::json!({"type": "offer", "sdp": pending.sdp}));
        tracker.send(encode_offer(&info_hash, &hostile_id, &id, &sdp)).await;
        let Some(WsRequest::Answer(answer)) = tracker.answer_within(STEP).await else {
            panic!("a real offer for our torrent is answered");
        };
        assert_eq!(answer.offer_id, id);
        assert_eq!(answer.to_peer_id, hostile_id);
        assert_eq!(answer.peer_id, session_id);
        let sdp: serde_json::Value = serde_json::from_str(answer.answer.get()).unwrap();
        assert_eq!(sdp["type"], "answer");
        let answer_sdp = sdp["sdp"].as_str().unwrap().to_owned();
        hostile.accept_answer(pending.id, answer_sdp).await.unwrap();
        let mut channel = tokio::time::timeout(STEP, pending.opened)
            .await
            .expect("the channel opens")
            .unwrap()
            .expect("open");
        if i % 2 == 0 {
            channel.write_all(&[0xEEu8; 300]).await.unwrap();
        }
        channels.push(channel);
        endpoints.push(hostile);
    }
    // A second connection between the same two sockets could not be told apart from the
    // first (DTLS names no connection): the session does not answer it.
    let busy = endpoints.last().unwrap();
    let pending = busy.create_offer().await.unwrap();
    let sdp = raw(serde_json::json!({"type": "offer", "sdp": pending.sdp}));
    tracker.send(encode_offer(&info_hash, &hostile_id, &[99; 20], &sdp)).await;
    assert!(
        tracker.answer_within(Duration::from_secs(2)).await.is_none(),
        "a second connection from a connected socket is refused"
    );
    busy.close(pending.id);
    // Each garbage sender is cut off at once; the silent ones when the handshake times out.
    for (i, mut channel) in channels.into_iter().enumerate() {
        let mut buf = vec![0u8; 4096];
        let mut got = 0usize;
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match channel.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "channel {i} was not closed by the session");
        // All the session ever sends first is its own 68-byte handshake.
        assert!(got <= 68, "channel {i}: the session sent {got} bytes to a peer with no handshake");
    }

    // Nothing is left: the session's own unanswered offers expire, every hostile one is closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while session.webrtc_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(session.webrtc_connections(), 0, "connections left behind");
    assert_eq!(torrent.status().stats.peers, 0);

    // 6. Oversized frames end the socket; the session reconnects at once (not at its next
    //    announce) and rejoins the swarm, so browsers can keep offering to it.
    tracker.send("x".repeat(MAX_MESSAGE_LEN + 1)).await;
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .expect("the session reconnects")
        .unwrap();
    let mut tracker = FakeTracker { ws: tokio_tungstenite::accept_async(tcp).await.unwrap() };
    let again = tokio::time::timeout(Duration::from_secs(30), tracker.recv()).await;
    let Ok(WsRequest::Announce(rejoin)) = again else { panic!("it announces again: {again:?}") };
    // With fresh offers, as an announce carries them: a peer that announced while the socket
    // was down meets the session through one of them, now.
    assert!(!rejoin.offers.is_empty(), "the rejoin carries offers");
    assert_eq!(rejoin.numwant, Some(rejoin.offers.len() as u32));
    let late = webrtc::start(&rtc_config()).await.unwrap();
    let late_id = PeerId(*b"-XX0001-latecomer123");
    let offer: serde_json::Value = serde_json::from_str(rejoin.offers[0].offer.get()).unwrap();
    let pending = late.accept_offer(offer["sdp"].as_str().unwrap().to_owned()).await.unwrap();
    let answer = format!(
        "{{\"action\":\"announce\",\"info_hash\":{},\"peer_id\":{},\"offer_id\":{},\"answer\":{}}}",
        json_binary(&info_hash.0),
        json_binary(&late_id.0),
        json_binary(&rejoin.offers[0].offer_id),
        serde_json::json!({"type": "answer", "sdp": pending.sdp}),
    );
    tracker.send(answer).await;
    let mut channel = tokio::time::timeout(STEP, pending.opened).await.unwrap().unwrap().unwrap();
    let theirs =
        webrtc::exchange_handshakes(&mut channel, &Handshake::new(info_hash, late_id)).await;
    assert_eq!(theirs.expect("the session's handshake").peer_id, session_id);

    // 7. And a well-behaved peer still gets through: a handshake comes back.
    let good = webrtc::start(&rtc_config()).await.unwrap();
    let pending = good.create_offer().await.unwrap();
    let id = [42u8; 20];
    let sdp = raw(serde_json::json!({"type": "offer", "sdp": pending.sdp}));
    let good_id = PeerId(*b"-XX0001-goodpeer1234");
    tracker.send(encode_offer(&info_hash, &good_id, &id, &sdp)).await;
    let Some(WsRequest::Answer(answer)) = tracker.answer_within(STEP).await else {
        panic!("the good offer is answered");
    };
    let sdp: serde_json::Value = serde_json::from_str(answer.answer.get()).unwrap();
    good.accept_answer(pending.id, sdp["sdp"].as_str().unwrap().to_owned()).await.unwrap();
    let mut channel = tokio::time::timeout(STEP, pending.opened).await.unwrap().unwrap().unwrap();
    let theirs =
        webrtc::exchange_handshakes(&mut channel, &Handshake::new(info_hash, good_id)).await;
    let theirs = theirs.expect("the session's handshake");
    assert_eq!(theirs.info_hash, info_hash);
    assert_eq!(theirs.peer_id, session_id);
}

/// A JSON string of 20 code points 0-255, as WebTorrent encodes binary ids.
fn json_binary(bytes: &[u8]) -> String {
    let mut out = String::new();
    shoal_tracker_proto::ws::push_json_binary_string(&mut out, bytes);
    out
}
