//! WebSocket trackers: the signalling protocol WebTorrent and bittorrent-tracker speak, both
//! directions (clients encode requests and decode responses, servers the reverse).
//!
//! There is no BEP: the reference is bittorrent-tracker. Every message is one JSON object in a
//! text frame. Binary values (info hash, peer id, offer id) travel as "binary strings": exactly
//! 20 characters, each code point 0-255 standing for one byte (see [`binary`]). Browsers cannot
//! dial each other, so an announce carries WebRTC `offers`; the tracker forwards each one to a
//! different peer of the swarm, and the peer's `answer` comes back through the tracker to the
//! offerer (`to_peer_id`). Offers and answers are opaque JSON objects (`{type, sdp}`) that the
//! tracker relays verbatim.
//!
//! [`WsClient`] is the client's sans-IO state machine (offers, answers, rejoins), shared by
//! the native and browser drivers.
//!
//! Everything taken from the wire is bounded: message length ([`MAX_MESSAGE_LEN`]), offers per
//! announce ([`MAX_OFFERS`]), torrents per scrape ([`MAX_SCRAPE_HASHES`]).

pub mod binary;
pub mod client;
mod number;
mod request;
mod response;

use thiserror::Error;

pub use binary::{decode_binary_id, encode_binary_id, push_json_binary_string};
pub use client::{
    offer_count, AnnounceError, AnnounceTicket, Announcement, Ignored, OfferDrop, OfferId,
    Reconnect, SendAnswerError, WsClient, WsClientConfig, WsEvent, DEFAULT_OFFERS,
    MAX_OFFERS_PER_ANNOUNCE, MAX_PENDING_ANNOUNCES, MAX_PENDING_OFFERS, MAX_SDP_LEN,
};
pub use request::{
    decode_request, decode_request_str, encode_request, WsAnnounce, WsAnswer, WsOffer, WsRequest,
};
pub use response::{
    decode_response, encode_announce_response, encode_answer, encode_failure, encode_offer,
    encode_response, encode_scrape_response, WsAction, WsResponse,
};

/// The longest message either side accepts. An offer is one SDP with all its ICE candidates
/// (no trickle), 1-4 KB; WebTorrent sends at most 10 per announce.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// How many offers one announce may carry on the wire (servers forward fewer; see their config).
pub const MAX_OFFERS: usize = 50;
/// How many torrents one scrape may ask about.
pub const MAX_SCRAPE_HASHES: usize = 256;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WsError {
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE_LEN} allowed")]
    TooLong(usize),
    #[error("message is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("invalid action {0:?}")]
    UnknownAction(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
    #[error("{0} offers, more than the {MAX_OFFERS} allowed")]
    TooManyOffers(usize),
    #[error("scrape of {0} torrents, more than the {MAX_SCRAPE_HASHES} allowed")]
    TooManyHashes(usize),
}

impl WsError {
    pub(crate) fn json(err: serde_json::Error) -> WsError {
        WsError::Json(err.to_string())
    }
}

/// Rejects a message before parsing it if it is longer than [`MAX_MESSAGE_LEN`].
pub(crate) fn check_len(text: &[u8]) -> Result<(), WsError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(WsError::TooLong(text.len()));
    }
    Ok(())
}
