//! The client against a scripted tracker: frames in as the tracker would encode them, frames
//! out decoded as the tracker would decode them.

use std::time::Duration;

use serde_json::value::RawValue;
use shoal_proto::{InfoHash, Instant, PeerId};

use super::*;
use crate::ws::{
    decode_request, encode_announce_response, encode_answer, encode_failure, encode_offer, WsAction,
};

const US: PeerId = PeerId(*b"-SH0001-ourselves!!!");
const THEM: PeerId = PeerId(*b"-WW0001-browserpeer1");
const A: InfoHash = InfoHash([0xaa; 20]);
const B: InfoHash = InfoHash([0xbb; 20]);

fn at(secs: u64) -> Instant {
    Instant::from_duration(Duration::from_secs(secs))
}

fn ms(millis: u64) -> Instant {
    Instant::from_duration(Duration::from_millis(millis))
}

fn request(info_hash: InfoHash, event: AnnounceEvent) -> AnnounceRequest {
    AnnounceRequest {
        event,
        uploaded: 10,
        downloaded: 20,
        left: Some(30),
        ..AnnounceRequest::new(info_hash, US, 6881)
    }
}

fn offer_id(n: u16) -> OfferId {
    let mut id = [0u8; 20];
    id[..2].copy_from_slice(&n.to_be_bytes());
    id[19] = 0xff; // a byte a naive UTF-8 encoding would mangle
    OfferId(id)
}

/// `count` offers numbered from `first`, each with its own SDP.
fn offers(first: u16, count: u16) -> Vec<(OfferId, String)> {
    (first..first + count)
        .map(|n| (offer_id(n), format!("v=0\r\no=- {n} 1 IN IP4 0.0.0.0\r\n")))
        .collect()
}

fn raw(json: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(json.to_string()).unwrap()
}

fn answer_frame(info_hash: InfoHash, id: OfferId, kind: &str, sdp: &str) -> String {
    encode_answer(&info_hash, &THEM, &id.0, &raw(serde_json::json!({"type": kind, "sdp": sdp})))
}

fn offer_frame(info_hash: InfoHash, from: PeerId, id: OfferId, kind: &str, sdp: &str) -> String {
    encode_offer(&info_hash, &from, &id.0, &raw(serde_json::json!({"type": kind, "sdp": sdp})))
}

fn connected() -> WsClient {
    let mut c = WsClient::new(US, WsClientConfig::default());
    c.connected(at(0));
    c
}

/// Everything the client wants sent, decoded as the tracker would.
fn sent(c: &mut WsClient) -> Vec<WsRequest> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|text| decode_request(text.as_bytes()).expect("the client sends valid messages"))
        .collect()
}

fn announces(c: &mut WsClient) -> Vec<WsAnnounce> {
    sent(c)
        .into_iter()
        .map(|r| match r {
            WsRequest::Announce(a) => a,
            other => panic!("expected an announce, got {other:?}"),
        })
        .collect()
}

/// The only element of `v`.
fn one<T: std::fmt::Debug>(mut v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "expected exactly one: {v:?}");
    v.remove(0)
}

fn events(c: &mut WsClient) -> Vec<WsEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Announces `A` (started) with `n` offers and drains the frame and events.
fn joined_with_offers(n: u16) -> (WsClient, AnnounceTicket) {
    let mut c = connected();
    let announced = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, n));
    assert!(announced.refused.is_empty());
    assert_eq!(announces(&mut c).len(), 1);
    assert!(events(&mut c).is_empty());
    (c, announced.ticket)
}

fn done(
    ticket: AnnounceTicket,
    info_hash: InfoHash,
    result: Result<AnnounceResponse, AnnounceError>,
) -> WsEvent {
    WsEvent::AnnounceDone { ticket, info_hash, result }
}

// ---- announces and their answers ----

#[test]
fn an_announce_carries_its_offers_and_gets_the_clamped_answer() {
    let mut c = connected();
    let announced = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 3));
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!((a.info_hash, a.peer_id, a.event), (A, US, AnnounceEvent::Started));
    assert_eq!((a.uploaded, a.downloaded, a.left, a.numwant), (10, 20, Some(30), Some(3)));
    let ids: Vec<OfferId> = a.offers.iter().map(|o| OfferId(o.offer_id)).collect();
    assert_eq!(ids, [offer_id(0), offer_id(1), offer_id(2)]);
    let sdp: serde_json::Value = serde_json::from_str(a.offers[1].offer.get()).unwrap();
    assert_eq!(sdp, serde_json::json!({"type": "offer", "sdp": offers(1, 1)[0].1}));
    assert!(events(&mut c).is_empty(), "nothing is done before the tracker answers");

    c.handle_text(at(1), &encode_announce_response(&A, 1, 4, 5));
    let mut expected = AnnounceResponse::empty();
    expected.interval = crate::types::MIN_INTERVAL;
    expected.seeders = Some(4);
    expected.leechers = Some(5);
    assert_eq!(events(&mut c), [done(announced.ticket, A, Ok(expected))]);
}

#[test]
fn huge_intervals_are_clamped_too() {
    let mut c = connected();
    let t = c.announce(at(0), &request(A, AnnounceEvent::None), vec![]).ticket;
    c.handle_text(at(1), &encode_announce_response(&A, u32::MAX, 0, 0));
    let WsEvent::AnnounceDone { ticket, result: Ok(r), .. } = one(events(&mut c)) else {
        panic!("one answered announce")
    };
    assert_eq!(ticket, t);
    assert_eq!(r.interval, crate::types::MAX_INTERVAL);
}

#[test]
fn answers_go_to_their_torrent_in_order() {
    let mut c = connected();
    let a1 = c.announce(at(0), &request(A, AnnounceEvent::Started), vec![]).ticket;
    let b1 = c.announce(at(0), &request(B, AnnounceEvent::Started), vec![]).ticket;
    let a2 = c.announce(at(1), &request(A, AnnounceEvent::None), vec![]).ticket;
    sent(&mut c);
    c.handle_text(at(2), &encode_announce_response(&A, 100, 0, 0));
    c.handle_text(at(2), &encode_announce_response(&A, 200, 0, 0));
    c.handle_text(at(2), &encode_announce_response(&B, 300, 0, 0));
    let got: Vec<(AnnounceTicket, InfoHash, u64)> = events(&mut c)
        .into_iter()
        .map(|e| match e {
            WsEvent::AnnounceDone { ticket, info_hash, result: Ok(r) } => {
                (ticket, info_hash, r.interval.as_secs())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [(a1, A, 100), (a2, A, 200), (b1, B, 300)]);
    // A third answer for A has nobody to go to.
    c.handle_text(at(3), &encode_announce_response(&A, 100, 0, 0));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnexpectedResponse)]);
}

#[test]
fn a_failure_reason_goes_to_the_waiting_announce() {
    let mut c = connected();
    let a = c.announce(at(0), &request(A, AnnounceEvent::Started), vec![]).ticket;
    let b = c.announce(at(1), &request(B, AnnounceEvent::Started), vec![]).ticket;
    // Named: B's announce fails even though A's is older.
    c.handle_text(
        at(2),
        &encode_failure(Some(WsAction::Announce), Some(&B), "torrent B not allowed"),
    );
    assert_eq!(
        events(&mut c),
        [done(b, B, Err(AnnounceError::Failure("torrent B not allowed".into())))]
    );
    // Unnamed: the oldest waiting announce of any torrent.
    c.handle_text(at(2), &encode_failure(None, None, "go away"));
    assert_eq!(events(&mut c), [done(a, A, Err(AnnounceError::Failure("go away".into())))]);
    // Nobody left to fail.
    c.handle_text(at(2), &encode_failure(None, Some(&A), "again"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnmatchedFailure("again".into()))]);
}

#[test]
fn an_unanswered_announce_times_out_and_a_late_answer_is_ignored() {
    let mut c = connected();
    let t = c.announce(at(10), &request(A, AnnounceEvent::Started), vec![]).ticket;
    assert_eq!(c.poll_timeout(), Some(at(25)));
    c.handle_timeout(ms(24_999));
    assert!(events(&mut c).is_empty(), "not before its time");
    c.handle_timeout(at(25));
    assert_eq!(events(&mut c), [done(t, A, Err(AnnounceError::Timeout))]);
    assert_eq!(c.poll_timeout(), None, "nothing left to time");
    c.handle_text(at(26), &encode_announce_response(&A, 120, 0, 0));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnexpectedResponse)]);
}

#[test]
fn a_client_with_nothing_to_do_needs_no_timer_and_no_socket() {
    let c = WsClient::new(US, WsClientConfig::default());
    assert_eq!(c.poll_timeout(), None);
    assert!(!c.wants_connection());
    assert!(!c.is_connected());
}

// ---- our offers and their answers ----

#[test]
fn answers_are_matched_to_offers_by_id() {
    let (mut c, _) = joined_with_offers(3);
    c.handle_text(at(1), &answer_frame(A, offer_id(1), "answer", "v=0\r\nanswer one\r\n"));
    assert_eq!(
        events(&mut c),
        [WsEvent::Answer {
            offer_id: offer_id(1),
            info_hash: A,
            peer_id: THEM,
            sdp: "v=0\r\nanswer one\r\n".into()
        }]
    );
    // An offer is answered once: a second answer to it is for nothing we have.
    c.handle_text(at(1), &answer_frame(A, offer_id(1), "answer", "v=0\r\n"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnknownOffer)]);
    // The others are still waiting.
    c.handle_text(at(1), &answer_frame(A, offer_id(2), "answer", "v=0\r\n"));
    assert!(
        matches!(events(&mut c)[..], [WsEvent::Answer { offer_id: id, .. }] if id == offer_id(2))
    );
}

#[test]
fn answers_to_unknown_offer_ids_change_nothing() {
    let (mut c, _) = joined_with_offers(2);
    c.handle_text(at(1), &answer_frame(A, offer_id(77), "answer", "v=0\r\n"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnknownOffer)]);
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.pending_offer_room(), MAX_PENDING_OFFERS - 2);
}

#[test]
fn a_bad_answer_uses_its_offer_up() {
    let (mut c, _) = joined_with_offers(3);
    c.handle_text(at(1), &answer_frame(B, offer_id(0), "answer", "v=0\r\n"));
    c.handle_text(at(1), &answer_frame(A, offer_id(1), "offer", "v=0\r\n"));
    c.handle_text(at(1), &answer_frame(A, offer_id(2), "answer", &"a".repeat(MAX_SDP_LEN + 1)));
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::WrongTorrent },
            WsEvent::OfferDropped { offer_id: offer_id(1), reason: OfferDrop::BadAnswer },
            WsEvent::OfferDropped { offer_id: offer_id(2), reason: OfferDrop::BadAnswer },
        ]
    );
    assert_eq!(c.pending_offer_room(), MAX_PENDING_OFFERS);
}

#[test]
fn unanswered_offers_expire() {
    let mut c = connected();
    c.announce(at(100), &request(A, AnnounceEvent::Started), offers(0, 2));
    c.handle_text(at(101), &encode_announce_response(&A, 120, 0, 0));
    events(&mut c);
    assert_eq!(c.poll_timeout(), Some(at(150)), "the default offer timeout is 50 s");
    c.handle_timeout(ms(149_999));
    assert!(events(&mut c).is_empty());
    c.handle_timeout(at(150));
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::Expired },
            WsEvent::OfferDropped { offer_id: offer_id(1), reason: OfferDrop::Expired },
        ]
    );
    assert_eq!(c.poll_timeout(), None);
    c.handle_text(at(151), &answer_frame(A, offer_id(0), "answer", "v=0\r\n"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnknownOffer)]);
}

#[test]
fn an_answer_after_the_offer_expired_is_not_matched_even_before_the_timer() {
    let (mut c, t) = joined_with_offers(1);
    // The driver's timer has not fired, but the answer is too late.
    c.handle_text(at(50), &answer_frame(A, offer_id(0), "answer", "v=0\r\n"));
    assert_eq!(
        events(&mut c),
        [
            done(t, A, Err(AnnounceError::Timeout)),
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::Expired },
            WsEvent::Ignored(Ignored::UnknownOffer),
        ]
    );
}

#[test]
fn the_offer_timeout_is_configurable() {
    let config =
        WsClientConfig { offer_timeout: Duration::from_secs(8), ..WsClientConfig::default() };
    let mut c = WsClient::new(US, config);
    c.connected(at(0));
    c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 1));
    assert_eq!(c.poll_timeout(), Some(at(8)));
}

// ---- offers from other peers ----

#[test]
fn offers_for_announced_torrents_are_passed_on() {
    let (mut c, _) = joined_with_offers(0);
    c.handle_text(at(1), &offer_frame(A, THEM, offer_id(9), "offer", "v=0\r\ntheirs\r\n"));
    assert_eq!(
        events(&mut c),
        [WsEvent::Offer {
            info_hash: A,
            peer_id: THEM,
            offer_id: offer_id(9),
            sdp: "v=0\r\ntheirs\r\n".into()
        }]
    );
}

#[test]
fn offers_for_torrents_not_announced_are_refused() {
    let (mut c, _) = joined_with_offers(0);
    c.handle_text(at(1), &offer_frame(B, THEM, offer_id(9), "offer", "v=0\r\n"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnannouncedTorrent)]);
    // And a fresh client has announced nothing at all.
    let mut fresh = connected();
    fresh.handle_text(at(1), &offer_frame(A, THEM, offer_id(9), "offer", "v=0\r\n"));
    assert_eq!(events(&mut fresh), [WsEvent::Ignored(Ignored::UnannouncedTorrent)]);
}

#[test]
fn unusable_and_own_offers_are_ignored() {
    let (mut c, _) = joined_with_offers(0);
    c.handle_text(at(1), &offer_frame(A, US, offer_id(1), "offer", "v=0\r\n"));
    c.handle_text(at(1), &offer_frame(A, THEM, offer_id(2), "answer", "v=0\r\n"));
    c.handle_text(at(1), &offer_frame(A, THEM, offer_id(3), "offer", ""));
    c.handle_text(at(1), &offer_frame(A, THEM, offer_id(4), "offer", &"a".repeat(MAX_SDP_LEN + 1)));
    c.handle_text(at(1), &encode_offer(&A, &THEM, &offer_id(5).0, &raw(serde_json::json!({}))));
    assert_eq!(
        events(&mut c),
        [
            WsEvent::Ignored(Ignored::OwnOffer),
            WsEvent::Ignored(Ignored::BadOffer),
            WsEvent::Ignored(Ignored::BadOffer),
            WsEvent::Ignored(Ignored::BadOffer),
            WsEvent::Ignored(Ignored::BadOffer),
        ]
    );
}

#[test]
fn our_answer_goes_to_the_offerer() {
    let (mut c, _) = joined_with_offers(0);
    c.send_answer(A, THEM, offer_id(9), "v=0\r\nours\r\n").unwrap();
    let WsRequest::Answer(a) = one(sent(&mut c)) else { panic!("one answer") };
    assert_eq!(
        (a.info_hash, a.peer_id, a.to_peer_id, OfferId(a.offer_id)),
        (A, US, THEM, offer_id(9))
    );
    let sdp: serde_json::Value = serde_json::from_str(a.answer.get()).unwrap();
    assert_eq!(sdp, serde_json::json!({"type": "answer", "sdp": "v=0\r\nours\r\n"}));
}

#[test]
fn answers_are_refused_when_they_cannot_be_sent() {
    let (mut c, _) = joined_with_offers(0);
    assert_eq!(c.send_answer(B, THEM, offer_id(9), "v=0\r\n"), Err(SendAnswerError::NotAnnounced));
    assert_eq!(c.send_answer(A, THEM, offer_id(9), ""), Err(SendAnswerError::BadSdp));
    let long = "a".repeat(MAX_SDP_LEN + 1);
    assert_eq!(c.send_answer(A, THEM, offer_id(9), &long), Err(SendAnswerError::BadSdp));
    c.disconnected(at(1), "gone");
    assert_eq!(c.send_answer(A, THEM, offer_id(9), "v=0\r\n"), Err(SendAnswerError::NotConnected));
    assert!(sent(&mut c).is_empty());
}

// ---- stopping ----

#[test]
fn a_stop_forgets_the_torrent_its_offers_and_its_rejoin() {
    let (mut c, started) = joined_with_offers(2);
    let other = c.announce(at(0), &request(B, AnnounceEvent::Started), offers(10, 1)).ticket;
    sent(&mut c);
    let stop = c.announce(at(1), &request(A, AnnounceEvent::Stopped), offers(20, 1));
    assert_eq!(stop.refused, [(offer_id(20), OfferDrop::Stopped)], "a stop carries no offers");
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!(
        (a.info_hash, a.event, a.numwant, a.offers.len()),
        (A, AnnounceEvent::Stopped, Some(0), 0)
    );
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::Stopped },
            WsEvent::OfferDropped { offer_id: offer_id(1), reason: OfferDrop::Stopped },
            done(stop.ticket, A, Ok(AnnounceResponse::empty())),
        ],
        "a stop is not waited for"
    );
    assert!(!c.is_joined(&A));
    c.handle_text(at(2), &offer_frame(A, THEM, offer_id(9), "offer", "v=0\r\n"));
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnannouncedTorrent)]);
    // The started announce made before the stop still gets the tracker's answer.
    c.handle_text(at(2), &encode_announce_response(&A, 120, 0, 0));
    assert!(
        matches!(events(&mut c)[..], [WsEvent::AnnounceDone { ticket, result: Ok(_), .. }] if ticket == started)
    );
    // After a reconnect only B rejoins.
    c.handle_text(at(2), &encode_announce_response(&B, 120, 0, 0));
    assert!(
        matches!(events(&mut c)[..], [WsEvent::AnnounceDone { ticket, .. }] if ticket == other)
    );
    c.disconnected(at(3), "closed");
    c.connected(at(4));
    let rejoined: Vec<InfoHash> = announces(&mut c).iter().map(|a| a.info_hash).collect();
    assert_eq!(rejoined, [B]);
}

#[test]
fn a_stop_while_disconnected_sends_nothing_and_cancels_what_waits() {
    let mut c = WsClient::new(US, WsClientConfig::default());
    let started = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 1)).ticket;
    assert!(c.wants_connection());
    let stop = c.announce(at(1), &request(A, AnnounceEvent::Stopped), vec![]).ticket;
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::Stopped },
            done(started, A, Err(AnnounceError::Stopped)),
            done(stop, A, Ok(AnnounceResponse::empty())),
        ]
    );
    assert!(!c.wants_connection(), "nothing left to say to the tracker");
    c.connected(at(2));
    assert!(sent(&mut c).is_empty());
}

// ---- reconnecting ----

#[test]
fn a_reconnect_fails_waiting_announces_and_rejoins_without_offers() {
    let (mut c, started) = joined_with_offers(2);
    c.disconnected(at(1), "closed by the tracker");
    assert_eq!(
        events(&mut c),
        [done(started, A, Err(AnnounceError::ConnectionLost("closed by the tracker".into())))]
    );
    assert!(c.wants_connection(), "a joined torrent wants the socket back at once");
    c.connected(at(2));
    let [rejoin] = announces(&mut c).try_into().unwrap();
    assert_eq!(rejoin.info_hash, A);
    assert_eq!(rejoin.event, AnnounceEvent::None, "started is said once");
    assert_eq!(rejoin.numwant, Some(0));
    assert!(rejoin.offers.is_empty());
    assert_eq!((rejoin.uploaded, rejoin.downloaded, rejoin.left), (10, 20, Some(30)));
    // The rejoin's answer is consumed silently, and the next announce gets its own answer.
    let next = c.announce(at(3), &request(A, AnnounceEvent::None), vec![]).ticket;
    c.handle_text(at(3), &encode_announce_response(&A, 111, 0, 0));
    assert!(events(&mut c).is_empty(), "the first answer is the rejoin's");
    c.handle_text(at(3), &encode_announce_response(&A, 222, 0, 0));
    let WsEvent::AnnounceDone { ticket, result: Ok(r), .. } = one(events(&mut c)) else {
        panic!("the announce is answered")
    };
    assert_eq!((ticket, r.interval.as_secs()), (next, 222));
    // Offers sent before the reconnect can still be answered: the tracker relays by peer id.
    c.handle_text(at(4), &answer_frame(A, offer_id(0), "answer", "v=0\r\n"));
    assert!(matches!(events(&mut c)[..], [WsEvent::Answer { .. }]));
}

#[test]
fn a_rejoin_carries_the_offers_made_for_it() {
    let (mut c, _) = joined_with_offers(1);
    // B waits for the socket with an announce of its own: it is not rejoined.
    c.disconnected(at(1), "reset");
    let _ = events(&mut c);
    c.announce(at(1), &request(B, AnnounceEvent::Started), offers(20, 1));
    assert_eq!(c.rejoining(), [A]);

    let refused = c.connected_with_offers(
        at(2),
        vec![(A, offers(10, 2)), (B, offers(30, 1)), (InfoHash([0xcc; 20]), offers(40, 1))],
    );
    assert_eq!(
        refused,
        [(offer_id(30), OfferDrop::NotSent), (offer_id(40), OfferDrop::NotSent)],
        "offers only go with rejoins"
    );
    let [rejoin, b] = announces(&mut c).try_into().unwrap();
    assert_eq!((rejoin.info_hash, rejoin.event), (A, AnnounceEvent::None));
    let ids: Vec<OfferId> = rejoin.offers.iter().map(|o| OfferId(o.offer_id)).collect();
    assert_eq!(ids, [offer_id(10), offer_id(11)]);
    assert_eq!(rejoin.numwant, Some(2), "as many peers as offers");
    assert_eq!((b.info_hash, b.offers.len()), (B, 1), "B's own announce, as it was");

    // An answer to a rejoin's offer is matched like any other.
    c.handle_text(at(3), &answer_frame(A, offer_id(11), "answer", "v=0\r\n"));
    assert!(
        matches!(events(&mut c)[..], [WsEvent::Answer { offer_id: id, .. }] if id == offer_id(11))
    );
    // And they expire like any other.
    c.handle_timeout(at(2) + WsClientConfig::default().offer_timeout);
    let expired: Vec<OfferId> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            WsEvent::OfferDropped { offer_id, reason: OfferDrop::Expired } => Some(offer_id),
            _ => None,
        })
        .collect();
    assert!(expired.contains(&offer_id(10)), "{expired:?}");
}

#[test]
fn a_rejoin_is_reannounced_with_the_latest_counts() {
    let (mut c, _) = joined_with_offers(0);
    let later =
        AnnounceRequest { uploaded: 1000, left: Some(0), ..request(A, AnnounceEvent::Completed) };
    c.announce(at(1), &later, offers(0, 1));
    c.disconnected(at(2), "x");
    c.connected(at(3));
    let [rejoin] = announces(&mut c).try_into().unwrap();
    assert_eq!((rejoin.event, rejoin.uploaded, rejoin.left), (AnnounceEvent::None, 1000, Some(0)));
}

#[test]
fn announces_made_while_disconnected_go_out_on_connect() {
    let mut c = WsClient::new(US, WsClientConfig::default());
    let t = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 2)).ticket;
    assert!(c.poll_transmit().is_none(), "nothing is sent on a closed socket");
    assert!(c.wants_connection());
    c.connected(at(1));
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!(
        (a.event, a.offers.len()),
        (AnnounceEvent::Started, 2),
        "sent once, not also as a rejoin"
    );
    c.handle_text(at(2), &encode_announce_response(&A, 120, 0, 0));
    assert!(
        matches!(events(&mut c)[..], [WsEvent::AnnounceDone { ticket, result: Ok(_), .. }] if ticket == t)
    );
}

#[test]
fn a_failed_connect_fails_unsent_announces_and_drops_their_offers() {
    let mut c = WsClient::new(US, WsClientConfig::default());
    let t = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 1)).ticket;
    c.disconnected(at(1), "connection refused");
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::NotSent },
            done(t, A, Err(AnnounceError::ConnectionLost("connection refused".into()))),
        ]
    );
    assert_eq!(c.pending_offer_room(), MAX_PENDING_OFFERS);
    // The torrent still wants to be in the swarm: the next connection rejoins it.
    assert!(c.wants_connection());
    c.connected(at(2));
    let [rejoin] = announces(&mut c).try_into().unwrap();
    assert_eq!((rejoin.info_hash, rejoin.numwant), (A, Some(0)));
}

#[test]
fn an_unsent_announce_times_out_with_its_offers() {
    let mut c = WsClient::new(US, WsClientConfig::default());
    let t = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 1)).ticket;
    assert_eq!(c.poll_timeout(), Some(at(15)));
    c.handle_timeout(at(15));
    assert_eq!(
        events(&mut c),
        [
            WsEvent::OfferDropped { offer_id: offer_id(0), reason: OfferDrop::NotSent },
            done(t, A, Err(AnnounceError::Timeout)),
        ]
    );
}

#[test]
fn offers_that_expired_before_the_socket_opened_are_left_out() {
    let config = WsClientConfig {
        announce_timeout: Duration::from_secs(60),
        offer_timeout: Duration::from_secs(5),
    };
    let mut c = WsClient::new(US, config);
    c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 2));
    c.handle_timeout(at(5));
    assert_eq!(events(&mut c).len(), 2, "both offers expired");
    c.connected(at(6));
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!((a.offers.len(), a.numwant), (0, Some(0)));
}

// ---- bounds ----

#[test]
fn one_announce_carries_at_most_ten_offers() {
    let mut c = connected();
    let announced = c.announce(at(0), &request(A, AnnounceEvent::Started), offers(0, 12));
    assert_eq!(
        announced.refused,
        [(offer_id(10), OfferDrop::TooMany), (offer_id(11), OfferDrop::TooMany)]
    );
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!(
        (a.offers.len(), a.numwant),
        (MAX_OFFERS_PER_ANNOUNCE as usize, Some(MAX_OFFERS_PER_ANNOUNCE))
    );
}

#[test]
fn offer_counts_follow_the_event_and_the_cap() {
    assert_eq!(offer_count(AnnounceEvent::Started, DEFAULT_OFFERS), 5);
    assert_eq!(offer_count(AnnounceEvent::None, 50), MAX_OFFERS_PER_ANNOUNCE);
    assert_eq!(offer_count(AnnounceEvent::Stopped, 5), 0);
}

#[test]
fn pending_offers_are_bounded() {
    let mut c = connected();
    let per = MAX_OFFERS_PER_ANNOUNCE as u16;
    let full = (MAX_PENDING_OFFERS as u16).div_ceil(per);
    let mut refused = Vec::new();
    for i in 0..full + 1 {
        // Spread over torrents so the per-torrent announce bound is not what stops us.
        let info_hash = InfoHash([i as u8; 20]);
        refused.extend(
            c.announce(at(0), &request(info_hash, AnnounceEvent::Started), offers(i * per, per))
                .refused,
        );
    }
    let made = usize::from((full + 1) * per);
    assert_eq!(refused.len(), made - MAX_PENDING_OFFERS);
    assert!(refused.iter().all(|(_, why)| *why == OfferDrop::TooMany));
    assert_eq!(c.pending_offer_room(), 0);
    // An answer frees one place.
    c.handle_text(at(1), &answer_frame(InfoHash([0; 20]), offer_id(0), "answer", "v=0\r\n"));
    assert_eq!(c.pending_offer_room(), 1);
}

#[test]
fn duplicate_and_unusable_offers_are_refused() {
    let (mut c, _) = joined_with_offers(1);
    let mut mine = offers(0, 1); // offer 0 is already waiting
    mine.push((offer_id(5), String::new()));
    mine.push((offer_id(6), "a".repeat(MAX_SDP_LEN + 1)));
    mine.extend(offers(7, 1));
    let announced = c.announce(at(1), &request(A, AnnounceEvent::None), mine);
    assert_eq!(
        announced.refused,
        [
            (offer_id(0), OfferDrop::Duplicate),
            (offer_id(5), OfferDrop::BadSdp),
            (offer_id(6), OfferDrop::BadSdp)
        ]
    );
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!(a.offers.iter().map(|o| OfferId(o.offer_id)).collect::<Vec<_>>(), [offer_id(7)]);
    // The first offer 0 is still the one waiting, for its own torrent.
    c.handle_text(at(2), &answer_frame(A, offer_id(0), "answer", "v=0\r\n"));
    assert!(matches!(events(&mut c)[..], [WsEvent::Answer { .. }]));
}

#[test]
fn waiting_announces_are_bounded_per_torrent() {
    let mut c = connected();
    for _ in 0..MAX_PENDING_ANNOUNCES {
        c.announce(at(0), &request(A, AnnounceEvent::None), vec![]);
    }
    assert_eq!(sent(&mut c).len(), MAX_PENDING_ANNOUNCES);
    assert!(events(&mut c).is_empty());
    let over = c.announce(at(0), &request(A, AnnounceEvent::None), offers(0, 1));
    assert_eq!(over.refused, [(offer_id(0), OfferDrop::AnnounceRefused)]);
    assert_eq!(events(&mut c), [done(over.ticket, A, Err(AnnounceError::TooManyInFlight))]);
    assert!(sent(&mut c).is_empty(), "the refused announce is not sent");
    // Another torrent is not affected, and one answer makes room again.
    assert!(c.announce(at(0), &request(B, AnnounceEvent::None), vec![]).refused.is_empty());
    c.handle_text(at(1), &encode_announce_response(&A, 120, 0, 0));
    events(&mut c);
    sent(&mut c);
    c.announce(at(1), &request(A, AnnounceEvent::None), vec![]);
    assert!(events(&mut c).is_empty());
    assert_eq!(sent(&mut c).len(), 1);
}

// ---- hostile input ----

#[test]
fn malformed_frames_are_reported_and_change_nothing() {
    let (mut c, t) = joined_with_offers(1);
    for bad in [
        "{not json".to_owned(),
        "[1,2,3]".to_owned(),
        "{}".to_owned(),
        r#"{"action":"announce"}"#.to_owned(),
        r#"{"action":"nope","info_hash":"x"}"#.to_owned(),
        "x".repeat(crate::ws::MAX_MESSAGE_LEN + 1),
    ] {
        c.handle_text(at(1), &bad);
        let [WsEvent::Ignored(Ignored::Malformed(_))] = events(&mut c)[..] else {
            panic!("{bad:.40} is reported as malformed")
        };
    }
    c.handle_text(at(1), r#"{"action":"scrape","files":{}}"#);
    assert_eq!(events(&mut c), [WsEvent::Ignored(Ignored::UnexpectedScrape)]);
    assert!(sent(&mut c).is_empty());
    // Everything still works.
    c.handle_text(at(2), &answer_frame(A, offer_id(0), "answer", "v=0\r\n"));
    c.handle_text(at(2), &encode_announce_response(&A, 120, 0, 0));
    let got = events(&mut c);
    assert!(
        matches!(got[..], [WsEvent::Answer { .. }, WsEvent::AnnounceDone { ticket, result: Ok(_), .. }] if ticket == t)
    );
}

#[test]
fn binary_ids_survive_the_round_trip() {
    // Ids are "binary strings": bytes 0x80-0xff must come back as the same bytes.
    let id = OfferId(std::array::from_fn(|i| 0xec + i as u8 % 20));
    let mut c = connected();
    c.announce(at(0), &request(A, AnnounceEvent::Started), vec![(id, "v=0\r\n".into())]);
    let [a] = announces(&mut c).try_into().unwrap();
    assert_eq!(OfferId(a.offers[0].offer_id), id);
    c.handle_text(at(1), &answer_frame(A, id, "answer", "v=0\r\n"));
    assert!(matches!(events(&mut c)[..], [WsEvent::Answer { offer_id, .. }] if offer_id == id));
}
