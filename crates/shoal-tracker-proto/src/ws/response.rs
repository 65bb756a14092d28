//! Tracker-to-client messages: announce answers, relayed offers and answers, scrape answers and
//! failures. Encoders write JSON directly (the server's hot path); the decoder is for clients.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_proto::{InfoHash, PeerId};

use super::binary::{decode_binary_id, push_json_binary_string, BinaryId};
use super::request::push_number;
use super::{check_len, WsError, MAX_SCRAPE_HASHES};
use crate::types::{bounded_message, ScrapeStats};

/// Which request a failure answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsAction {
    Announce,
    Scrape,
}

impl WsAction {
    fn name(self) -> &'static str {
        match self {
            WsAction::Announce => "announce",
            WsAction::Scrape => "scrape",
        }
    }
}

/// A decoded tracker message.
#[derive(Clone, Debug)]
pub enum WsResponse {
    /// The answer to our announce: re-announce after `interval` seconds.
    Announce {
        info_hash: InfoHash,
        interval: u32,
        complete: u32,
        incomplete: u32,
    },
    /// Another peer's offer, relayed: answer it with [`super::WsRequest::Answer`].
    Offer {
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: [u8; 20],
        offer: Box<RawValue>,
    },
    /// The answer to one of our offers.
    Answer {
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: [u8; 20],
        answer: Box<RawValue>,
    },
    Scrape {
        files: Vec<(InfoHash, ScrapeStats)>,
        min_request_interval: Option<u32>,
    },
    /// The tracker refused a request; the text is for the user.
    Failure {
        action: Option<WsAction>,
        info_hash: Option<InfoHash>,
        reason: String,
    },
}

impl PartialEq for WsResponse {
    fn eq(&self, other: &Self) -> bool {
        // RawValue has no PartialEq: compare encodings, which are canonical for our encoder.
        encode_response(self) == encode_response(other)
    }
}

/// `{"action":"announce","interval":..,"info_hash":..,"complete":..,"incomplete":..}`
pub fn encode_announce_response(
    info_hash: &InfoHash,
    interval: u32,
    complete: u32,
    incomplete: u32,
) -> String {
    let mut out = String::with_capacity(112);
    out.push_str("{\"action\":\"announce\",\"info_hash\":");
    push_json_binary_string(&mut out, &info_hash.0);
    push_number(&mut out, "interval", u64::from(interval));
    push_number(&mut out, "complete", u64::from(complete));
    push_number(&mut out, "incomplete", u64::from(incomplete));
    out.push('}');
    out
}

/// A relayed offer, as its recipient sees it (`peer_id` is the offerer).
pub fn encode_offer(
    info_hash: &InfoHash,
    from: &PeerId,
    offer_id: &[u8; 20],
    offer: &RawValue,
) -> String {
    relayed(info_hash, from, offer_id, "offer", offer)
}

/// A relayed answer, as the offerer sees it (`peer_id` is the answerer).
pub fn encode_answer(
    info_hash: &InfoHash,
    from: &PeerId,
    offer_id: &[u8; 20],
    answer: &RawValue,
) -> String {
    relayed(info_hash, from, offer_id, "answer", answer)
}

fn relayed(
    info_hash: &InfoHash,
    from: &PeerId,
    offer_id: &[u8; 20],
    key: &str,
    payload: &RawValue,
) -> String {
    // The keys, and three ids of up to 42 bytes each (twice 20 plus quotes) in the common case.
    let mut out = String::with_capacity(80 + 3 * 42 + key.len() + payload.get().len());
    out.push_str("{\"action\":\"announce\",\"info_hash\":");
    push_json_binary_string(&mut out, &info_hash.0);
    out.push_str(",\"peer_id\":");
    push_json_binary_string(&mut out, &from.0);
    out.push_str(",\"offer_id\":");
    push_json_binary_string(&mut out, offer_id);
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    out.push_str(payload.get());
    out.push('}');
    out
}

/// `{"action":"scrape","files":{<hash>:{complete,incomplete,downloaded}},"flags":{..}}`
pub fn encode_scrape_response(
    files: &[(InfoHash, ScrapeStats)],
    min_request_interval: Option<u32>,
) -> String {
    let mut out = String::with_capacity(32 + files.len() * 96);
    out.push_str("{\"action\":\"scrape\",\"files\":{");
    for (i, (hash, stats)) in files.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_binary_string(&mut out, &hash.0);
        out.push_str(":{\"complete\":");
        out.push_str(&stats.seeders.to_string());
        push_number(&mut out, "incomplete", u64::from(stats.leechers));
        push_number(&mut out, "downloaded", u64::from(stats.completed));
        out.push('}');
    }
    out.push('}');
    if let Some(secs) = min_request_interval {
        out.push_str(",\"flags\":{\"min_request_interval\":");
        out.push_str(&secs.to_string());
        out.push('}');
    }
    out.push('}');
    out
}

/// A refusal. WebTorrent drops announce answers for another torrent, so a failure that is
/// about one torrent should carry its `info_hash`.
pub fn encode_failure(
    action: Option<WsAction>,
    info_hash: Option<&InfoHash>,
    reason: &str,
) -> String {
    let mut out = String::with_capacity(64 + reason.len());
    out.push('{');
    if let Some(action) = action {
        out.push_str("\"action\":\"");
        out.push_str(action.name());
        out.push_str("\",");
    }
    if let Some(hash) = info_hash {
        out.push_str("\"info_hash\":");
        push_json_binary_string(&mut out, &hash.0);
        out.push(',');
    }
    out.push_str("\"failure reason\":");
    // A &str always serialises.
    out.push_str(&serde_json::to_string(reason).unwrap_or_else(|_| "\"error\"".into()));
    out.push('}');
    out
}

/// Encodes any tracker message.
pub fn encode_response(resp: &WsResponse) -> String {
    match resp {
        WsResponse::Announce { info_hash, interval, complete, incomplete } => {
            encode_announce_response(info_hash, *interval, *complete, *incomplete)
        }
        WsResponse::Offer { info_hash, peer_id, offer_id, offer } => {
            encode_offer(info_hash, peer_id, offer_id, offer)
        }
        WsResponse::Answer { info_hash, peer_id, offer_id, answer } => {
            encode_answer(info_hash, peer_id, offer_id, answer)
        }
        WsResponse::Scrape { files, min_request_interval } => {
            encode_scrape_response(files, *min_request_interval)
        }
        WsResponse::Failure { action, info_hash, reason } => {
            encode_failure(*action, info_hash.as_ref(), reason)
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    info_hash: Option<BinaryId>,
    peer_id: Option<BinaryId>,
    offer_id: Option<BinaryId>,
    #[serde(borrow)]
    offer: Option<&'a RawValue>,
    #[serde(borrow)]
    answer: Option<&'a RawValue>,
    interval: Option<u32>,
    complete: Option<u32>,
    incomplete: Option<u32>,
    #[serde(rename = "failure reason", borrow)]
    failure: Option<Cow<'a, str>>,
    #[serde(borrow)]
    files: Option<BTreeMap<Cow<'a, str>, WireStats>>,
    flags: Option<WireFlags>,
}

#[derive(Deserialize)]
struct WireStats {
    #[serde(default)]
    complete: u32,
    #[serde(default)]
    incomplete: u32,
    #[serde(default)]
    downloaded: u32,
}

#[derive(Deserialize)]
struct WireFlags {
    min_request_interval: Option<u32>,
}

/// Decodes one tracker message (client side).
pub fn decode_response(text: &[u8]) -> Result<WsResponse, WsError> {
    check_len(text)?;
    let wire: Wire = serde_json::from_slice(text).map_err(WsError::json)?;
    let action = match wire.action.as_deref() {
        Some("announce") => Some(WsAction::Announce),
        Some("scrape") => Some(WsAction::Scrape),
        None => None,
        Some(other) => return Err(WsError::UnknownAction(other.chars().take(32).collect())),
    };
    let info_hash = wire.info_hash.map(|id| InfoHash(id.0));
    if let Some(reason) = wire.failure {
        return Ok(WsResponse::Failure {
            action,
            info_hash,
            reason: bounded_message(reason.as_bytes()),
        });
    }
    match action {
        Some(WsAction::Scrape) => {
            let map = wire.files.ok_or(WsError::Missing("files"))?;
            if map.len() > MAX_SCRAPE_HASHES {
                return Err(WsError::TooManyHashes(map.len()));
            }
            let files = map
                .into_iter()
                .map(|(k, s)| {
                    let stats = ScrapeStats {
                        seeders: s.complete,
                        completed: s.downloaded,
                        leechers: s.incomplete,
                    };
                    Ok((InfoHash(decode_binary_id(&k, "files")?), stats))
                })
                .collect::<Result<Vec<_>, WsError>>()?;
            Ok(WsResponse::Scrape {
                files,
                min_request_interval: wire.flags.and_then(|f| f.min_request_interval),
            })
        }
        Some(WsAction::Announce) => {
            let info_hash = info_hash.ok_or(WsError::Missing("info_hash"))?;
            let relay = |payload: &RawValue| -> Result<_, WsError> {
                let peer_id = PeerId(wire.peer_id.ok_or(WsError::Missing("peer_id"))?.0);
                let offer_id = wire.offer_id.ok_or(WsError::Missing("offer_id"))?.0;
                Ok((peer_id, offer_id, payload.to_owned()))
            };
            if let Some(offer) = wire.offer {
                let (peer_id, offer_id, offer) = relay(offer)?;
                return Ok(WsResponse::Offer { info_hash, peer_id, offer_id, offer });
            }
            if let Some(answer) = wire.answer {
                let (peer_id, offer_id, answer) = relay(answer)?;
                return Ok(WsResponse::Answer { info_hash, peer_id, offer_id, answer });
            }
            Ok(WsResponse::Announce {
                info_hash,
                interval: wire.interval.ok_or(WsError::Missing("interval"))?,
                complete: wire.complete.unwrap_or(0),
                incomplete: wire.incomplete.unwrap_or(0),
            })
        }
        None => Err(WsError::Missing("action")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn every_response_round_trips() {
        let h = InfoHash(std::array::from_fn(|i| i as u8 * 11));
        let p = PeerId([0xfe; 20]);
        let stats = ScrapeStats { seeders: 1, completed: 2, leechers: 3 };
        let cases = vec![
            WsResponse::Announce { info_hash: h, interval: 120, complete: 4, incomplete: 5 },
            WsResponse::Offer {
                info_hash: h,
                peer_id: p,
                offer_id: [7; 20],
                offer: raw(r#"{"type":"offer","sdp":"a\r\nb"}"#),
            },
            WsResponse::Answer {
                info_hash: h,
                peer_id: p,
                offer_id: [0; 20],
                answer: raw(r#"{"type":"answer","sdp":""}"#),
            },
            WsResponse::Scrape { files: vec![(h, stats)], min_request_interval: Some(60) },
            WsResponse::Failure {
                action: Some(WsAction::Announce),
                info_hash: Some(h),
                reason: "no \"way\"".into(),
            },
            WsResponse::Failure { action: None, info_hash: None, reason: "bad".into() },
        ];
        for resp in cases {
            let text = encode_response(&resp);
            // Every encoding is valid JSON.
            serde_json::from_str::<serde_json::Value>(&text).unwrap();
            assert_eq!(decode_response(text.as_bytes()).unwrap(), resp, "{text}");
        }
    }

    #[test]
    fn reads_bittorrent_tracker_answers() {
        let id = "\\u0001bcdefghijklmnopqrst";
        let text = format!(
            r#"{{"complete":1,"incomplete":0,"action":"announce","info_hash":"{id}","interval":120}}"#
        );
        let Ok(WsResponse::Announce { complete: 1, interval: 120, info_hash, .. }) =
            decode_response(text.as_bytes())
        else {
            panic!()
        };
        assert_eq!(info_hash.0[0], 1);
        assert!(decode_response(br#"{"action":"announce"}"#).is_err());
        assert!(decode_response(br#"{"action":"nope"}"#).is_err());
        assert!(decode_response(br#"{"action":"scrape","files":{"short":{}}}"#).is_err());
    }
}
