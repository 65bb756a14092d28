//! How a peer broke the protocol: the reason the core drops it, by name.
//!
//! Every message handler returns [`Handled`]. A [`ProtocolViolation`] ends the connection
//! ([`DisconnectReason::Protocol`](super::DisconnectReason::Protocol) carries it to the
//! driver, its logs and tests); [`Stop::PeerGone`] only stops handling a message whose peer
//! was dropped on the way (a seed meeting a seed, a ban), which is nobody's fault.

use thiserror::Error;

use crate::bitfield::BitfieldError;
use crate::extension::ExtensionError;
use crate::metadata::MetadataError;
use crate::metainfo::MetainfoError;
use crate::wire::BlockRef;

/// A peer's message the protocol does not allow. The peer is whoever sent it: the key in the
/// [`Action::Disconnect`](super::Action::Disconnect) that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolViolation {
    /// `have` (or a late bitfield or have-all turned into haves) for a piece that does not
    /// exist.
    #[error("have for piece {piece} of {count}")]
    HaveOutOfRange { piece: u32, count: u32 },
    /// `lt_donthave` for a piece that does not exist.
    #[error("lt_donthave for piece {piece} of {count}")]
    DontHaveOutOfRange { piece: u32, count: u32 },
    /// A bitfield of the wrong length or with spare bits set.
    #[error("bad bitfield: {0}")]
    BadBitfield(BitfieldError),
    /// A message of the Fast extension (BEP 6) from a peer that did not offer it.
    #[error("{0} without the Fast extension")]
    FastMessageWithoutFast(FastMessage),
    /// A request for a block outside the torrent, longer than a block, or before we know
    /// the torrent's size.
    #[error("invalid request {0:?}")]
    InvalidRequest(BlockRef),
    /// More unrequested block bytes than a late cancel can explain.
    #[error("more than {limit} bytes of blocks nobody requested")]
    TooManyUnrequestedBytes { limit: u64 },
    /// An extended handshake (BEP 10) that does not decode.
    #[error("bad extended handshake: {0}")]
    BadExtendedHandshake(ExtensionError),
    /// A `ut_metadata` message (BEP 9) that does not decode.
    #[error("bad ut_metadata message: {0}")]
    BadMetadataMessage(ExtensionError),
    /// An `lt_donthave` message that does not decode.
    #[error("bad lt_donthave: {0}")]
    BadDontHave(ExtensionError),
    /// Metadata the peer announced or sent that cannot be right: an absurd size, a piece of
    /// the wrong length, or (for every contributor) a whole that fails the info hash.
    #[error("bad metadata: {0}")]
    BadMetadata(MetadataError),
    /// Metadata that hashes to the info hash but is not a valid info dictionary.
    #[error("metadata is not a valid torrent: {0}")]
    InvalidTorrent(MetainfoError),
    /// An outgoing connection whose peer answered for another torrent.
    #[error("handshake for another torrent")]
    WrongTorrent,
}

impl ProtocolViolation {
    /// A stable name for the violation, for counts in status reports and `--json` events.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolViolation::HaveOutOfRange { .. } => "have_out_of_range",
            ProtocolViolation::DontHaveOutOfRange { .. } => "donthave_out_of_range",
            ProtocolViolation::BadBitfield(_) => "bad_bitfield",
            ProtocolViolation::FastMessageWithoutFast(_) => "fast_message_without_fast",
            ProtocolViolation::InvalidRequest(_) => "invalid_request",
            ProtocolViolation::TooManyUnrequestedBytes { .. } => "too_many_unrequested_bytes",
            ProtocolViolation::BadExtendedHandshake(_) => "bad_extended_handshake",
            ProtocolViolation::BadMetadataMessage(_) => "bad_metadata_message",
            ProtocolViolation::BadDontHave(_) => "bad_donthave",
            ProtocolViolation::BadMetadata(_) => "bad_metadata",
            ProtocolViolation::InvalidTorrent(_) => "invalid_torrent",
            ProtocolViolation::WrongTorrent => "wrong_torrent",
        }
    }
}

/// The Fast extension's messages a peer can send without having offered the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastMessage {
    HaveAll,
    HaveNone,
    Reject,
}

impl std::fmt::Display for FastMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FastMessage::HaveAll => "have-all",
            FastMessage::HaveNone => "have-none",
            FastMessage::Reject => "reject",
        })
    }
}

/// Why a message handler stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    /// The peer broke the protocol: drop it.
    Violation(ProtocolViolation),
    /// The peer was dropped while its message was handled; nothing is left to do.
    PeerGone,
}

impl From<ProtocolViolation> for Stop {
    fn from(violation: ProtocolViolation) -> Self {
        Stop::Violation(violation)
    }
}

/// What a message handler returns.
pub(super) type Handled = Result<(), Stop>;
