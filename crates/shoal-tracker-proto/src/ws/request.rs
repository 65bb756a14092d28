//! Client-to-tracker messages: announces (with offers), answers to relayed offers, scrapes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_proto::{InfoHash, PeerId};

use super::binary::{push_json_binary_string, BinaryId, OneOrMany};
use super::{check_len, number, WsError, MAX_OFFERS, MAX_SCRAPE_HASHES};
use crate::types::AnnounceEvent;

/// One WebRTC offer of an announce: `offer` is the opaque `{type, sdp}` object.
#[derive(Clone, Debug)]
pub struct WsOffer {
    pub offer_id: [u8; 20],
    pub offer: Box<RawValue>,
}

impl PartialEq for WsOffer {
    fn eq(&self, other: &Self) -> bool {
        self.offer_id == other.offer_id && self.offer.get() == other.offer.get()
    }
}
impl Eq for WsOffer {}

/// An announce: join or refresh the swarm, and offer connections to up to `offers.len()` peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsAnnounce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub event: AnnounceEvent,
    pub numwant: Option<u32>,
    pub uploaded: u64,
    pub downloaded: u64,
    /// `None` when the client does not know (a magnet link before the metadata, sent as
    /// `null`): such a peer is a leecher, never a seeder.
    pub left: Option<u64>,
    pub offers: Vec<WsOffer>,
}

impl WsAnnounce {
    /// A regular announce with nothing transferred, size unknown and no offers.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        WsAnnounce {
            info_hash,
            peer_id,
            event: AnnounceEvent::None,
            numwant: None,
            uploaded: 0,
            downloaded: 0,
            left: None,
            offers: Vec::new(),
        }
    }

    /// Whether this peer has the whole torrent.
    pub fn is_seeder(&self) -> bool {
        self.left == Some(0)
    }
}

/// The answer of `peer_id` to the offer `offer_id` that `to_peer_id` made.
#[derive(Clone, Debug)]
pub struct WsAnswer {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub to_peer_id: PeerId,
    pub offer_id: [u8; 20],
    pub answer: Box<RawValue>,
}

impl PartialEq for WsAnswer {
    fn eq(&self, other: &Self) -> bool {
        self.info_hash == other.info_hash
            && self.peer_id == other.peer_id
            && self.to_peer_id == other.to_peer_id
            && self.offer_id == other.offer_id
            && self.answer.get() == other.answer.get()
    }
}
impl Eq for WsAnswer {}

/// A decoded client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsRequest {
    Announce(WsAnnounce),
    /// An `announce` that carries an `answer`: relayed, never answered.
    Answer(WsAnswer),
    /// Counts for one or more torrents.
    Scrape {
        info_hashes: Vec<InfoHash>,
    },
}

/// Every field any client message may carry; which ones must be there depends on the action.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    info_hash: Option<OneOrMany>,
    peer_id: Option<BinaryId>,
    to_peer_id: Option<BinaryId>,
    offer_id: Option<BinaryId>,
    #[serde(borrow)]
    answer: Option<&'a RawValue>,
    #[serde(borrow)]
    offers: Option<Vec<WireOffer<'a>>>,
    #[serde(default, deserialize_with = "number::count")]
    numwant: Option<u64>,
    #[serde(default, deserialize_with = "number::count")]
    uploaded: Option<u64>,
    #[serde(default, deserialize_with = "number::count")]
    downloaded: Option<u64>,
    #[serde(default, deserialize_with = "number::count_or_null")]
    left: Option<u64>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireOffer<'a> {
    offer_id: BinaryId,
    #[serde(borrow)]
    offer: &'a RawValue,
}

/// Decodes one client message (server side). Unknown fields are ignored, as bittorrent-tracker
/// does; known fields of the wrong type are errors.
pub fn decode_request(text: &[u8]) -> Result<WsRequest, WsError> {
    check_len(text)?;
    // One UTF-8 check of the whole message, then a parser that trusts it: `from_slice` would
    // check each string and each raw offer on its own, which costs more than the parse. Text
    // that is not UTF-8 still goes to `from_slice`, for the same error as ever.
    match std::str::from_utf8(text) {
        Ok(text) => decode_request_str(text),
        Err(_) => decode_wire(serde_json::from_slice(text).map_err(WsError::json)?),
    }
}

/// [`decode_request`] of a message already known to be UTF-8 (a WebSocket server checks
/// text frames anyway), without checking it again.
pub fn decode_request_str(text: &str) -> Result<WsRequest, WsError> {
    check_len(text.as_bytes())?;
    decode_wire(serde_json::from_str(text).map_err(WsError::json)?)
}

fn decode_wire(wire: Wire) -> Result<WsRequest, WsError> {
    match wire.action.as_deref() {
        Some("announce") => {}
        Some("scrape") => return decode_scrape(wire),
        Some(other) => return Err(WsError::UnknownAction(bounded(other))),
        None => return Err(WsError::Missing("action")),
    }
    let info_hash = match wire.info_hash {
        Some(OneOrMany(ids)) if ids.len() == 1 => InfoHash(ids[0]),
        Some(_) => return Err(WsError::Invalid { field: "info_hash", reason: "not one id" }),
        None => return Err(WsError::Missing("info_hash")),
    };
    let peer_id = PeerId(wire.peer_id.ok_or(WsError::Missing("peer_id"))?.0);

    if let Some(answer) = wire.answer {
        let to_peer_id = wire.to_peer_id.ok_or(WsError::Missing("to_peer_id"))?;
        let offer_id = wire.offer_id.ok_or(WsError::Missing("offer_id"))?;
        return Ok(WsRequest::Answer(WsAnswer {
            info_hash,
            peer_id,
            to_peer_id: PeerId(to_peer_id.0),
            offer_id: offer_id.0,
            answer: signal(answer, "answer")?,
        }));
    }

    let event = match wire.event.as_deref() {
        None | Some("" | "update" | "empty" | "paused") => AnnounceEvent::None,
        Some("started") => AnnounceEvent::Started,
        Some("completed") => AnnounceEvent::Completed,
        Some("stopped") => AnnounceEvent::Stopped,
        Some(_) => return Err(WsError::Invalid { field: "event", reason: "unknown event" }),
    };
    let wire_offers = wire.offers.unwrap_or_default();
    if wire_offers.len() > MAX_OFFERS {
        return Err(WsError::TooManyOffers(wire_offers.len()));
    }
    let offers = wire_offers
        .into_iter()
        .map(|o| Ok(WsOffer { offer_id: o.offer_id.0, offer: signal(o.offer, "offer")? }))
        .collect::<Result<Vec<_>, WsError>>()?;
    Ok(WsRequest::Announce(WsAnnounce {
        info_hash,
        peer_id,
        event,
        numwant: wire.numwant.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        uploaded: wire.uploaded.unwrap_or(0),
        downloaded: wire.downloaded.unwrap_or(0),
        left: wire.left,
        offers,
    }))
}

fn decode_scrape(wire: Wire) -> Result<WsRequest, WsError> {
    let ids = wire.info_hash.ok_or(WsError::Missing("info_hash"))?.0;
    if ids.is_empty() {
        return Err(WsError::Invalid { field: "info_hash", reason: "empty list" });
    }
    if ids.len() > MAX_SCRAPE_HASHES {
        return Err(WsError::TooManyHashes(ids.len()));
    }
    Ok(WsRequest::Scrape { info_hashes: ids.into_iter().map(InfoHash).collect() })
}

/// A signalling payload must be a JSON object (`{type, sdp}`); it is kept verbatim.
fn signal(raw: &RawValue, field: &'static str) -> Result<Box<RawValue>, WsError> {
    if !raw.get().starts_with('{') {
        return Err(WsError::Invalid { field, reason: "not a JSON object" });
    }
    Ok(raw.to_owned())
}

/// An unknown action echoed in an error, cut so a peer cannot make us echo megabytes.
fn bounded(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Encodes a client message (client side), in the shape WebTorrent sends.
pub fn encode_request(req: &WsRequest) -> String {
    let mut out = String::with_capacity(256);
    match req {
        WsRequest::Announce(a) => {
            out.push_str("{\"action\":\"announce\",\"info_hash\":");
            push_json_binary_string(&mut out, &a.info_hash.0);
            out.push_str(",\"peer_id\":");
            push_json_binary_string(&mut out, &a.peer_id.0);
            if let Some(name) = a.event.http_name() {
                out.push_str(",\"event\":\"");
                out.push_str(name);
                out.push('"');
            }
            if let Some(n) = a.numwant {
                push_number(&mut out, "numwant", u64::from(n));
            }
            push_number(&mut out, "uploaded", a.uploaded);
            push_number(&mut out, "downloaded", a.downloaded);
            match a.left {
                Some(left) => push_number(&mut out, "left", left),
                None => out.push_str(",\"left\":null"),
            }
            if !a.offers.is_empty() {
                out.push_str(",\"offers\":[");
                for (i, o) in a.offers.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"offer\":");
                    out.push_str(o.offer.get());
                    out.push_str(",\"offer_id\":");
                    push_json_binary_string(&mut out, &o.offer_id);
                    out.push('}');
                }
                out.push(']');
            }
            out.push('}');
        }
        WsRequest::Answer(a) => {
            out.push_str("{\"action\":\"announce\",\"info_hash\":");
            push_json_binary_string(&mut out, &a.info_hash.0);
            out.push_str(",\"peer_id\":");
            push_json_binary_string(&mut out, &a.peer_id.0);
            out.push_str(",\"to_peer_id\":");
            push_json_binary_string(&mut out, &a.to_peer_id.0);
            out.push_str(",\"answer\":");
            out.push_str(a.answer.get());
            out.push_str(",\"offer_id\":");
            push_json_binary_string(&mut out, &a.offer_id);
            out.push('}');
        }
        WsRequest::Scrape { info_hashes } => {
            out.push_str("{\"action\":\"scrape\",\"info_hash\":[");
            for (i, h) in info_hashes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_binary_string(&mut out, &h.0);
            }
            out.push_str("]}");
        }
    }
    out
}

pub(crate) fn push_number(out: &mut String, key: &str, value: u64) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, ",\"{key}\":{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn ids() -> ([u8; 20], [u8; 20]) {
        (std::array::from_fn(|i| i as u8 * 13), std::array::from_fn(|i| 255 - i as u8))
    }

    #[test]
    fn announce_with_offers_round_trips() {
        let (a, b) = ids();
        let req = WsRequest::Announce(WsAnnounce {
            event: AnnounceEvent::Started,
            numwant: Some(5),
            uploaded: 1,
            downloaded: 2,
            left: None,
            offers: vec![WsOffer {
                offer_id: b,
                offer: raw(r#"{"type":"offer","sdp":"v=0\r\n"}"#),
            }],
            ..WsAnnounce::new(InfoHash(a), PeerId(b))
        });
        let text = encode_request(&req);
        assert!(text.contains("\"left\":null"));
        assert_eq!(decode_request(text.as_bytes()).unwrap(), req);
    }

    #[test]
    fn answer_and_scrape_round_trip() {
        let (a, b) = ids();
        let answer = WsRequest::Answer(WsAnswer {
            info_hash: InfoHash(a),
            peer_id: PeerId(a),
            to_peer_id: PeerId(b),
            offer_id: b,
            answer: raw(r#"{"type":"answer","sdp":"x"}"#),
        });
        assert_eq!(decode_request(encode_request(&answer).as_bytes()).unwrap(), answer);
        let scrape = WsRequest::Scrape { info_hashes: vec![InfoHash(a), InfoHash(b)] };
        assert_eq!(decode_request(encode_request(&scrape).as_bytes()).unwrap(), scrape);
    }

    #[test]
    fn reads_what_webtorrent_sends() {
        // Ids as JavaScript's JSON.stringify writes them, floats and a single-string scrape.
        let id = "\\u0000\\u0001é\\\"abcdefghijklmnop";
        let text = format!(
            r#"{{"action":"announce","info_hash":"{id}","peer_id":"{id}","numwant":50,
            "uploaded":0,"downloaded":1.5e3,"left":0,"trackerid":"x","extra":[1,2]}}"#
        );
        let Ok(WsRequest::Announce(a)) = decode_request(text.as_bytes()) else { panic!() };
        assert!(a.is_seeder());
        assert_eq!(a.downloaded, 1500);
        assert_eq!(a.info_hash.0[..4], [0, 1, 0xe9, b'"']);
        assert_eq!(a.event, AnnounceEvent::None);
        let scrape = format!(r#"{{"action":"scrape","info_hash":"{id}"}}"#);
        assert!(matches!(
            decode_request(scrape.as_bytes()),
            Ok(WsRequest::Scrape { info_hashes }) if info_hashes.len() == 1
        ));
    }

    #[test]
    fn magnet_left_null_is_not_a_seeder() {
        let (a, _) = ids();
        let mut text =
            encode_request(&WsRequest::Announce(WsAnnounce::new(InfoHash(a), PeerId(a))));
        assert!(text.contains("\"left\":null"));
        let Ok(WsRequest::Announce(req)) = decode_request(text.as_bytes()) else { panic!() };
        assert_eq!(req.left, None);
        assert!(!req.is_seeder());
        text = text.replace("\"left\":null", "\"left\":0");
        let Ok(WsRequest::Announce(req)) = decode_request(text.as_bytes()) else { panic!() };
        assert!(req.is_seeder());
    }

    #[test]
    fn rejects_bad_messages_clearly() {
        let id = "a".repeat(20);
        let ok = format!(r#""info_hash":"{id}","peer_id":"{id}""#);
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "JSON"),
            ("[1,2]".into(), "JSON"),
            (format!(r#"{{"action":"dance",{ok}}}"#), "invalid action"),
            (format!(r#"{{{ok}}}"#), "missing field `action`"),
            (format!(r#"{{"action":7,{ok}}}"#), "JSON"),
            (r#"{"action":"announce","peer_id":"aaaaaaaaaaaaaaaaaaaa"}"#.into(), "info_hash"),
            (format!(r#"{{"action":"announce","info_hash":"{id}","peer_id":"short"}}"#), "20"),
            (format!(r#"{{"action":"announce",{ok},"uploaded":"1"}}"#), "JSON"),
            (format!(r#"{{"action":"announce",{ok},"uploaded":-1}}"#), "negative"),
            (format!(r#"{{"action":"announce",{ok},"left":"x"}}"#), "JSON"),
            (format!(r#"{{"action":"announce",{ok},"event":"dance"}}"#), "unknown event"),
            (format!(r#"{{"action":"announce",{ok},"offers":{{}}}}"#), "JSON"),
            (
                format!(
                    r#"{{"action":"announce",{ok},"offers":[{{"offer":"x","offer_id":"{id}"}}]}}"#
                ),
                "object",
            ),
            (format!(r#"{{"action":"announce",{ok},"offers":[{{"offer":{{}}}}]}}"#), "offer_id"),
            (format!(r#"{{"action":"announce",{ok},"answer":{{}}}}"#), "to_peer_id"),
            (
                format!(r#"{{"action":"announce",{ok},"answer":{{}},"to_peer_id":"{id}"}}"#),
                "offer_id",
            ),
            (r#"{"action":"scrape","info_hash":[]}"#.into(), "empty"),
            (r#"{"action":"scrape","info_hash":5}"#.into(), "JSON"),
        ];
        for (text, needle) in cases {
            let err = decode_request(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let offers: Vec<String> =
            (0..=MAX_OFFERS).map(|_| format!(r#"{{"offer":{{}},"offer_id":"{id}"}}"#)).collect();
        let flood = format!(r#"{{"action":"announce",{ok},"offers":[{}]}}"#, offers.join(","));
        assert_eq!(decode_request(flood.as_bytes()), Err(WsError::TooManyOffers(MAX_OFFERS + 1)));
        let hashes = vec![format!("\"{id}\""); MAX_SCRAPE_HASHES + 1].join(",");
        let scrape = format!(r#"{{"action":"scrape","info_hash":[{hashes}]}}"#);
        assert!(decode_request(scrape.as_bytes()).unwrap_err().to_string().contains("256"));
        let huge = format!(
            r#"{{"action":"announce","pad":"{}"}}"#,
            "x".repeat(super::super::MAX_MESSAGE_LEN)
        );
        assert!(matches!(decode_request(huge.as_bytes()), Err(WsError::TooLong(_))));
        assert!(decode_request(&[0xff, 0xfe, b'{']).is_err());
    }
}
