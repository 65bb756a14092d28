//! The `{type, sdp}` objects simple-peer (and so WebTorrent) signals with.
//!
//! The tracker relays them verbatim, so whatever arrives here came from an unknown peer: it is
//! parsed into exactly this shape, of the expected type, and bounded in length before a WebRTC
//! stack sees it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A SDP longer than this is refused, ours or a peer's. Real ones, with every ICE candidate
/// inlined (no trickle), are 1-4 KB; str0m and browsers should never see a megabyte of text.
pub const MAX_SDP_LEN: usize = 32 * 1024;

/// Which side of the exchange a description is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    fn name(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sdp: &'a str,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

/// `sdp` as the JSON object to put on the wire; `None` if it is empty or too long.
pub(super) fn encode(kind: SdpKind, sdp: &str) -> Option<Box<RawValue>> {
    if !usable(sdp) {
        return None;
    }
    // Serialising two strings cannot fail; if it ever did, the offer is dropped, not sent.
    serde_json::value::to_raw_value(&Outgoing { kind: kind.name(), sdp }).ok()
}

/// The SDP of a relayed description, if it is a `{type, sdp}` object of type `kind` with a
/// usable SDP.
pub(super) fn decode(raw: &RawValue, kind: SdpKind) -> Option<String> {
    let d: Incoming = serde_json::from_str(raw.get()).ok()?;
    (d.kind == kind.name() && usable(&d.sdp)).then_some(d.sdp)
}

fn usable(sdp: &str) -> bool {
    !sdp.is_empty() && sdp.len() <= MAX_SDP_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn descriptions_round_trip() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\na=\"quoted\"\r\n";
        let wire = encode(SdpKind::Offer, sdp).unwrap();
        assert_eq!(decode(&wire, SdpKind::Offer).as_deref(), Some(sdp));
        // The other side's kind is not accepted in its place.
        assert_eq!(decode(&wire, SdpKind::Answer), None);
    }

    #[test]
    fn unusable_descriptions_are_refused() {
        assert!(encode(SdpKind::Answer, "").is_none());
        assert!(encode(SdpKind::Answer, &"a".repeat(MAX_SDP_LEN + 1)).is_none());
        assert!(
            encode(SdpKind::Answer, &"a".repeat(MAX_SDP_LEN)).is_some(),
            "the bound is inclusive"
        );
        for bad in [
            r#"{"type":"offer","sdp":""}"#,
            r#"{"type":1,"sdp":[]}"#,
            r#"{"sdp":"v=0"}"#,
            r#"{"type":"offer"}"#,
            r#"[1,2]"#,
            r#""v=0""#,
        ] {
            assert_eq!(decode(&raw(bad), SdpKind::Offer), None, "{bad}");
        }
        let long = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(MAX_SDP_LEN + 1));
        assert_eq!(decode(&raw(&long), SdpKind::Offer), None);
    }
}
