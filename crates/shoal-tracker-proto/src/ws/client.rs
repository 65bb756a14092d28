//! The WebSocket tracker client's state machine: WebTorrent signalling without the sockets.
//!
//! One [`WsClient`] stands for one socket to one tracker, shared by every torrent of the
//! session. It keeps the bookkeeping both drivers (native, browser) need and leaves them the
//! I/O: the socket and its TLS, timers, and the WebRTC stack that makes offers and answers.
//! In the style of quinn-proto and str0m, time is passed in and the client is mutated, then
//! drained:
//!
//! ```text
//! socket open:   client.connected(now)        socket gone:  client.disconnected(now, why)
//!     (or, with offers for client.rejoining(): client.connected_with_offers(now, offers))
//! announce:      client.announce(now, &req, offers)  -> ticket (+ offers refused at once)
//! text frame:    client.handle_text(now, text)
//! answer made:   client.send_answer(info_hash, to, offer_id, sdp)
//! timer:         client.handle_timeout(now)   at client.poll_timeout()
//! after each:    send every client.poll_transmit(), act on every client.poll_event()
//! reconnect:     wait Reconnect::failed(now), then connect if client.wants_connection()
//! ```
//!
//! What it remembers: the torrents announced on the socket (only their incoming offers are
//! passed on) with their last announce, sent again after a reconnect (with fresh offers when
//! the driver made some) so the tracker keeps relaying offers to us; our offers by offer id until answered or expired; and
//! the announces waiting for the tracker's answer. Everything from the tracker is checked:
//! answers must match an offer of ours and its torrent, SDPs are bounded, intervals clamped.

mod announces;
mod events;
mod offers;
mod reconnect;
mod sdp;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use shoal_proto::{InfoHash, Instant, PeerId};

use self::announces::{Announces, Answered, Failed, Unsent};
use self::offers::PendingOffers;
use self::sdp::SdpKind;
use super::{
    decode_response, encode_request, WsAnnounce, WsAnswer, WsOffer, WsRequest, WsResponse,
};
use crate::types::{clamp_interval, AnnounceEvent, AnnounceRequest, AnnounceResponse};

pub use self::announces::MAX_PENDING_ANNOUNCES;
pub use self::events::{AnnounceError, Ignored, OfferDrop, SendAnswerError, WsEvent};
pub use self::offers::MAX_PENDING_OFFERS;
pub use self::reconnect::{Reconnect, BACKOFF_MAX, BACKOFF_START, STABLE_CONNECTION};
pub use self::sdp::MAX_SDP_LEN;

/// Offers made per announce unless the torrent asks for a number (WebTorrent makes 5-10).
pub const DEFAULT_OFFERS: u32 = 5;
/// The most offers one announce carries; each is a WebRTC connection waiting for a peer.
pub const MAX_OFFERS_PER_ANNOUNCE: u32 = 10;

/// How many offers to make for an announce that asks for `requested`: none for a stop (we
/// are leaving), at most [`MAX_OFFERS_PER_ANNOUNCE`].
pub fn offer_count(event: AnnounceEvent, requested: u32) -> u32 {
    match event {
        AnnounceEvent::Stopped => 0,
        _ => requested.min(MAX_OFFERS_PER_ANNOUNCE),
    }
}

/// The id that matches an answer to our offer; the driver makes it (20 random bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferId(pub [u8; 20]);

impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OfferId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Names one [`WsClient::announce`]; its [`WsEvent::AnnounceDone`] carries the same ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnnounceTicket(u64);

/// Timeouts of a [`WsClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsClientConfig {
    /// How long an announce waits for the tracker's answer, counted from
    /// [`WsClient::announce`] (so it includes waiting for the socket to connect).
    pub announce_timeout: Duration,
    /// How long an offer of ours waits for an answer. Best equal to how long the driver's
    /// WebRTC stack keeps an unanswered offer: WebTorrent's is 50 s.
    pub offer_timeout: Duration,
}

impl Default for WsClientConfig {
    fn default() -> Self {
        WsClientConfig {
            announce_timeout: Duration::from_secs(15),
            offer_timeout: Duration::from_secs(50),
        }
    }
}

/// What [`WsClient::announce`] did with the call.
#[derive(Debug, PartialEq, Eq)]
pub struct Announcement {
    pub ticket: AnnounceTicket,
    /// Offers that did not go into the announce: drop their connections now. (No
    /// [`WsEvent::OfferDropped`] comes for them.)
    pub refused: Vec<(OfferId, OfferDrop)>,
}

/// The signalling state of one tracker socket; see the [module docs](self).
pub struct WsClient {
    peer_id: PeerId,
    config: WsClientConfig,
    connected: bool,
    /// Torrents announced on this socket and not stopped, each with its last announce as a
    /// rejoin: no offers, no event, `numwant` 0.
    joined: BTreeMap<InfoHash, WsAnnounce>,
    offers: PendingOffers,
    announces: Announces,
    transmit: VecDeque<String>,
    events: VecDeque<WsEvent>,
}

impl WsClient {
    /// A client for a socket not yet connected. `peer_id` goes into every announce and
    /// answer, and offers from it (ours, relayed back) are ignored.
    pub fn new(peer_id: PeerId, config: WsClientConfig) -> Self {
        WsClient {
            peer_id,
            config,
            connected: false,
            joined: BTreeMap::new(),
            offers: PendingOffers::default(),
            announces: Announces::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the socket should be open: torrents to keep in the swarm, or announces
    /// waiting to go out. When false, a driver need not reconnect until the next announce.
    pub fn wants_connection(&self) -> bool {
        !self.joined.is_empty() || self.announces.has_any_unsent()
    }

    /// Whether offers for `info_hash` are passed on (it is announced and not stopped).
    pub fn is_joined(&self, info_hash: &InfoHash) -> bool {
        self.joined.contains_key(info_hash)
    }

    /// Offers waiting for an answer, so a driver can make no more than fit.
    pub fn pending_offer_room(&self) -> usize {
        self.offers.room()
    }

    /// The socket is open: rejoins go out first, then the announces made while it was down.
    pub fn connected(&mut self, now: Instant) {
        self.connected_with_offers(now, Vec::new());
    }

    /// The torrents [`connected`](Self::connected) would rejoin: announced on this socket, not
    /// stopped, and with no announce of their own waiting to go out. A driver that can make
    /// offers before it reports the socket open makes them for these.
    pub fn rejoining(&self) -> Vec<InfoHash> {
        let waiting = self.announces.unsent_torrents();
        self.joined.keys().filter(|h| !waiting.contains(h)).copied().collect()
    }

    /// [`connected`](Self::connected), with `offers` (per torrent, as
    /// [`announce`](Self::announce) takes them) sent with those torrents' rejoins, as a fresh
    /// announce carries them: a peer that announced while we were away learns of us now
    /// rather than at our next announce, minutes later. Returns the offers refused (for a
    /// torrent not rejoined, or beyond the limits).
    pub fn connected_with_offers(
        &mut self,
        now: Instant,
        mut offers: Vec<(InfoHash, Vec<(OfferId, String)>)>,
    ) -> Vec<(OfferId, OfferDrop)> {
        self.connected = true;
        self.transmit.clear();
        let unsent = self.announces.take_unsent();
        let deadline = now + self.config.announce_timeout;
        let expires = now + self.config.offer_timeout;
        let rejoins: Vec<WsAnnounce> = self
            .joined
            .values()
            // A torrent with an announce of its own waiting needs no rejoin before it.
            .filter(|a| !unsent.iter().any(|u| u.announce.info_hash == a.info_hash))
            .cloned()
            .collect();
        let mut refused = Vec::new();
        for mut rejoin in rejoins {
            let mine = offers.iter().position(|(h, _)| *h == rejoin.info_hash);
            for (id, sdp) in mine.map(|i| offers.remove(i).1).unwrap_or_default() {
                match self.add_offer(&rejoin, id, &sdp, expires) {
                    Ok(offer) => rejoin.offers.push(offer),
                    Err(why) => refused.push((id, why)),
                }
            }
            rejoin.numwant = Some(rejoin.offers.len() as u32);
            self.announces.push_sent(rejoin.info_hash, None, deadline);
            self.transmit.push_back(encode_request(&WsRequest::Announce(rejoin)));
        }
        refused.extend(
            offers.into_iter().flat_map(|(_, o)| o).map(|(id, _)| (id, OfferDrop::NotSent)),
        );
        for Unsent { ticket, deadline, mut announce } in unsent {
            // Offers may have expired while waiting for the socket.
            announce.offers.retain(|o| self.offers.contains(&OfferId(o.offer_id)));
            announce.numwant = Some(announce.offers.len() as u32);
            self.announces.push_sent(announce.info_hash, Some(ticket), deadline);
            self.transmit.push_back(encode_request(&WsRequest::Announce(announce)));
        }
        refused
    }

    /// The socket closed, or an attempt to open it failed: every waiting announce fails with
    /// `reason`. Offers already sent stay until they expire: the tracker relays answers by
    /// peer id, so one may still come on the next connection.
    pub fn disconnected(&mut self, _now: Instant, reason: &str) {
        self.connected = false;
        self.transmit.clear();
        let failed = self.announces.take_all();
        self.fail(failed, || AnnounceError::ConnectionLost(reason.to_owned()));
    }

    /// Announces `req` with `offers` (id and SDP of each WebRTC offer the driver made). A
    /// stop is answered at once (trackers do not always answer one) and forgets the torrent.
    /// Announces made while disconnected go out when [`connected`](Self::connected) is called.
    pub fn announce(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        offers: Vec<(OfferId, String)>,
    ) -> Announcement {
        let ticket = self.announces.new_ticket();
        let info_hash = req.info_hash;
        let refuse_all = |offers: Vec<(OfferId, String)>, why| {
            offers.into_iter().map(|(id, _)| (id, why)).collect::<Vec<_>>()
        };
        if req.event == AnnounceEvent::Stopped {
            self.stop(req);
            self.done(ticket, info_hash, Ok(AnnounceResponse::empty()));
            return Announcement { ticket, refused: refuse_all(offers, OfferDrop::Stopped) };
        }
        if self.announces.in_flight(&info_hash) >= MAX_PENDING_ANNOUNCES {
            self.done(ticket, info_hash, Err(AnnounceError::TooManyInFlight));
            return Announcement {
                ticket,
                refused: refuse_all(offers, OfferDrop::AnnounceRefused),
            };
        }

        let mut announce = wire_announce(self.peer_id, req);
        let mut refused = Vec::new();
        let expires = now + self.config.offer_timeout;
        for (id, sdp) in offers {
            match self.add_offer(&announce, id, &sdp, expires) {
                Ok(offer) => announce.offers.push(offer),
                Err(why) => refused.push((id, why)),
            }
        }
        announce.numwant = Some(announce.offers.len() as u32);
        self.joined.insert(info_hash, rejoin_of(self.peer_id, req));

        let deadline = now + self.config.announce_timeout;
        if self.connected {
            self.announces.push_sent(info_hash, Some(ticket), deadline);
            self.transmit.push_back(encode_request(&WsRequest::Announce(announce)));
        } else {
            self.announces.push_unsent(Unsent { ticket, deadline, announce });
        }
        Announcement { ticket, refused }
    }

    /// Sends our answer to `to`'s offer `offer_id` (from a [`WsEvent::Offer`]).
    pub fn send_answer(
        &mut self,
        info_hash: InfoHash,
        to: PeerId,
        offer_id: OfferId,
        sdp: &str,
    ) -> Result<(), SendAnswerError> {
        if !self.connected {
            return Err(SendAnswerError::NotConnected);
        }
        if !self.is_joined(&info_hash) {
            return Err(SendAnswerError::NotAnnounced);
        }
        let answer = sdp::encode(SdpKind::Answer, sdp).ok_or(SendAnswerError::BadSdp)?;
        let answer = WsAnswer {
            info_hash,
            peer_id: self.peer_id,
            to_peer_id: to,
            offer_id: offer_id.0,
            answer,
        };
        self.transmit.push_back(encode_request(&WsRequest::Answer(answer)));
        Ok(())
    }

    /// A text frame from the tracker. Anything malformed or unexpected becomes
    /// [`WsEvent::Ignored`] and changes nothing.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        // What is due expires first, so an answer that arrives after its offer's time is not
        // matched just because the driver's timer has not fired yet.
        self.handle_timeout(now);
        let message = match decode_response(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => return self.ignore(Ignored::Malformed(e)),
        };
        match message {
            WsResponse::Announce { info_hash, interval, complete, incomplete } => {
                match self.announces.answer(&info_hash) {
                    Answered::Ticket(ticket) => {
                        let mut response = AnnounceResponse::empty();
                        response.interval = clamp_interval(u64::from(interval));
                        response.seeders = Some(complete);
                        response.leechers = Some(incomplete);
                        self.done(ticket, info_hash, Ok(response));
                    }
                    Answered::Rejoin => {}
                    Answered::Nobody => self.ignore(Ignored::UnexpectedResponse),
                }
            }
            WsResponse::Failure { info_hash, reason, .. } => {
                // bittorrent-tracker names the torrent; without a name the failure answers
                // the oldest announce of any torrent.
                let (info_hash, answered) = match info_hash {
                    Some(h) => (Some(h), self.announces.answer(&h)),
                    None => self.announces.answer_oldest(),
                };
                match (info_hash, answered) {
                    (Some(h), Answered::Ticket(ticket)) => {
                        self.done(ticket, h, Err(AnnounceError::Failure(reason)));
                    }
                    _ => self.ignore(Ignored::UnmatchedFailure(reason)),
                }
            }
            WsResponse::Offer { info_hash, peer_id, offer_id, offer } => {
                if !self.is_joined(&info_hash) {
                    return self.ignore(Ignored::UnannouncedTorrent);
                }
                if peer_id == self.peer_id {
                    return self.ignore(Ignored::OwnOffer);
                }
                let Some(sdp) = sdp::decode(&offer, SdpKind::Offer) else {
                    return self.ignore(Ignored::BadOffer);
                };
                let offer_id = OfferId(offer_id);
                self.events.push_back(WsEvent::Offer { info_hash, peer_id, offer_id, sdp });
            }
            WsResponse::Answer { info_hash, peer_id, offer_id, answer } => {
                let offer_id = OfferId(offer_id);
                let Some(ours) = self.offers.take(&offer_id) else {
                    return self.ignore(Ignored::UnknownOffer);
                };
                // The offer is used up either way: a bad answer means its peer is gone.
                if ours != info_hash {
                    return self.drop_offer(offer_id, OfferDrop::WrongTorrent);
                }
                let Some(sdp) = sdp::decode(&answer, SdpKind::Answer) else {
                    return self.drop_offer(offer_id, OfferDrop::BadAnswer);
                };
                self.events.push_back(WsEvent::Answer { offer_id, info_hash, peer_id, sdp });
            }
            WsResponse::Scrape { .. } => self.ignore(Ignored::UnexpectedScrape),
        }
    }

    /// Times out announces and offers whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let failed = self.announces.expire(now);
        self.fail(failed, || AnnounceError::Timeout);
        for id in self.offers.expire(now) {
            self.drop_offer(id, OfferDrop::Expired);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.announces.next_deadline(), self.offers.next_expiry()].into_iter().flatten().min()
    }

    /// The next text frame to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<WsEvent> {
        self.events.pop_front()
    }

    /// Forgets `req`'s torrent: its offers are dropped, announces of it not yet sent are
    /// cancelled, and the tracker is told if the socket is open (if not, it forgot us anyway).
    fn stop(&mut self, req: &AnnounceRequest) {
        let info_hash = req.info_hash;
        self.joined.remove(&info_hash);
        for id in self.offers.take_torrent(&info_hash) {
            self.drop_offer(id, OfferDrop::Stopped);
        }
        let cancelled =
            Failed { sent: Vec::new(), unsent: self.announces.take_unsent_of(&info_hash) };
        self.fail(cancelled, || AnnounceError::Stopped);
        if self.connected {
            let mut stop = wire_announce(self.peer_id, req);
            stop.numwant = Some(0);
            self.transmit.push_back(encode_request(&WsRequest::Announce(stop)));
        }
    }

    fn add_offer(
        &mut self,
        announce: &WsAnnounce,
        id: OfferId,
        sdp: &str,
        expires: Instant,
    ) -> Result<WsOffer, OfferDrop> {
        if announce.offers.len() >= MAX_OFFERS_PER_ANNOUNCE as usize {
            return Err(OfferDrop::TooMany);
        }
        let offer = sdp::encode(SdpKind::Offer, sdp).ok_or(OfferDrop::BadSdp)?;
        self.offers.insert(id, announce.info_hash, expires)?;
        Ok(WsOffer { offer_id: id.0, offer })
    }

    /// Reports failed announces in ticket order; the offers of those that never went out are
    /// dropped with them.
    fn fail(&mut self, failed: Failed, error: impl Fn() -> AnnounceError) {
        let mut done: Vec<(AnnounceTicket, InfoHash)> = failed.sent;
        for unsent in &failed.unsent {
            done.push((unsent.ticket, unsent.announce.info_hash));
            for offer in &unsent.announce.offers {
                let id = OfferId(offer.offer_id);
                if self.offers.take(&id).is_some() {
                    self.drop_offer(id, OfferDrop::NotSent);
                }
            }
        }
        done.sort();
        for (ticket, info_hash) in done {
            self.done(ticket, info_hash, Err(error()));
        }
    }

    fn done(
        &mut self,
        ticket: AnnounceTicket,
        info_hash: InfoHash,
        result: Result<AnnounceResponse, AnnounceError>,
    ) {
        self.events.push_back(WsEvent::AnnounceDone { ticket, info_hash, result });
    }

    fn drop_offer(&mut self, offer_id: OfferId, reason: OfferDrop) {
        self.events.push_back(WsEvent::OfferDropped { offer_id, reason });
    }

    fn ignore(&mut self, why: Ignored) {
        self.events.push_back(WsEvent::Ignored(why));
    }
}

/// `req` in the wire's shape, without offers.
fn wire_announce(peer_id: PeerId, req: &AnnounceRequest) -> WsAnnounce {
    WsAnnounce {
        event: req.event,
        uploaded: req.uploaded,
        downloaded: req.downloaded,
        left: req.left,
        ..WsAnnounce::new(req.info_hash, peer_id)
    }
}

/// What to send after a reconnect: the same counts, but no event (a `started` or `completed`
/// is said once) and no offers (those went with the original), so `numwant` 0.
fn rejoin_of(peer_id: PeerId, req: &AnnounceRequest) -> WsAnnounce {
    WsAnnounce { event: AnnounceEvent::None, numwant: Some(0), ..wire_announce(peer_id, req) }
}
