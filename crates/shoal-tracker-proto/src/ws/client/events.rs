//! What the client tells its driver, and why it refused or dropped something.

use shoal_proto::{InfoHash, PeerId};
use thiserror::Error;

use super::{AnnounceTicket, OfferId};
use crate::ws::WsError;
use crate::AnnounceResponse;

/// Something the driver must act on; drained with [`WsClient::poll_event`](super::WsClient::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// The outcome of [`WsClient::announce`](super::WsClient::announce). Every ticket gets
    /// exactly one.
    AnnounceDone {
        ticket: AnnounceTicket,
        info_hash: InfoHash,
        result: Result<AnnounceResponse, AnnounceError>,
    },
    /// `peer_id` answered our offer `offer_id`: apply `sdp` to the connection made for it.
    Answer { offer_id: OfferId, info_hash: InfoHash, peer_id: PeerId, sdp: String },
    /// `peer_id` offers a connection for a torrent announced on this socket: make an answer
    /// and hand it to [`WsClient::send_answer`](super::WsClient::send_answer).
    Offer { info_hash: InfoHash, peer_id: PeerId, offer_id: OfferId, sdp: String },
    /// Our offer `offer_id` will get no answer: drop the connection made for it.
    OfferDropped { offer_id: OfferId, reason: OfferDrop },
    /// The tracker sent something we dropped; for logs.
    Ignored(Ignored),
}

/// Why one of our offers went nowhere.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum OfferDrop {
    #[error("no answer in time")]
    Expired,
    #[error("its announce never went out")]
    NotSent,
    #[error("too many offers (per announce or waiting for answers)")]
    TooMany,
    #[error("an offer with this id is already waiting")]
    Duplicate,
    #[error("its SDP is empty or too long")]
    BadSdp,
    #[error("the torrent stopped")]
    Stopped,
    #[error("its announce was refused")]
    AnnounceRefused,
    #[error("the answer named another torrent")]
    WrongTorrent,
    #[error("the answer is not a usable SDP answer")]
    BadAnswer,
}

/// Why an announce failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AnnounceError {
    /// The tracker refused it (`failure reason`).
    #[error("tracker failure: {0}")]
    Failure(String),
    #[error("the tracker did not answer in time")]
    Timeout,
    #[error("connection to the tracker lost: {0}")]
    ConnectionLost(String),
    #[error("too many announces of this torrent waiting for the tracker")]
    TooManyInFlight,
    #[error("the torrent stopped before this announce went out")]
    Stopped,
}

/// Why [`WsClient::send_answer`](super::WsClient::send_answer) refused; the driver drops the
/// connection it made for the answer.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum SendAnswerError {
    #[error("not connected to the tracker")]
    NotConnected,
    #[error("the torrent is not announced on this socket (any more)")]
    NotAnnounced,
    #[error("the answer's SDP is empty or too long")]
    BadSdp,
}

/// Something from the tracker that was dropped without effect.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Ignored {
    #[error("malformed message: {0}")]
    Malformed(#[from] WsError),
    #[error("answer to an offer we do not have (unknown, answered or expired)")]
    UnknownOffer,
    #[error("offer for a torrent not announced on this socket")]
    UnannouncedTorrent,
    #[error("our own offer, relayed back to us")]
    OwnOffer,
    #[error("offer that is not a usable SDP offer")]
    BadOffer,
    #[error("announce answer nobody waits for")]
    UnexpectedResponse,
    #[error("failure nobody waits for: {0}")]
    UnmatchedFailure(String),
    #[error("scrape answer we never asked for")]
    UnexpectedScrape,
}
