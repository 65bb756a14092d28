//! Offers gathered ahead of need.
//!
//! Every announce to a WebSocket tracker carries offers with their ICE candidates (no
//! trickle), and gathering them was the longest wait between a pasted magnet and its first
//! peer: ~150 ms in Chromium for an announce's five at once, longer than signalling, the
//! connection and the metadata together (~35 ms in a fresh page since [`crate::rtc`] sends
//! an SDP once its host candidates are in). So the client keeps a few offers gathered while it
//! is idle, and an announce takes them and goes out at once. A pool that is empty (the client
//! has just started) gathers one offer first, for the announce waiting for it, then the rest;
//! what the announce went without is a [`Shortfall`].
//!
//! An offer carries no info hash, so one pool serves every torrent of the client. A pooled
//! offer is renewed after [`MAX_AGE`]: a server-reflexive candidate stays valid only as long
//! as the NAT keeps its mapping, which for an idle UDP socket can be well under a minute.
//! Refilling waits [`REFILL_PAUSE`] after the pool was last drawn from, so new gathering does
//! not compete with the connections that the drawn offers are about to make.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_channel::oneshot;
use shoal_proto::Instant;
use shoal_tracker_proto::types::AnnounceResponse;
use web_sys::{RtcDataChannel, RtcPeerConnection};

use crate::budget::{ConnectionBudget, Slot};
use crate::clock::Clock;
use crate::{log, rtc};

/// A pooled offer older than this is closed and gathered again.
pub const MAX_AGE: Duration = Duration::from_secs(25);
/// After an offer is taken, the pool waits this long before it gathers replacements.
pub const REFILL_PAUSE: Duration = Duration::from_secs(2);
/// The most offers a client keeps ready (each one an open `RTCPeerConnection`).
pub const MAX_TARGET: usize = 10;

/// The offers an announce went out without, because the pool had fewer ready than it asks
/// for: a second announce carries them if the tracker's answer shows peers left to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub lacking: usize,
    pub sent: usize,
}

impl Shortfall {
    /// How many more offers are worth making. The tracker counts the announcing peer among
    /// its seeders and leechers (bittorrent-tracker and ours both do), and relays each offer
    /// of an announce to a different peer, picked at random. So with no more other peers than
    /// offers sent, every one of them has had an offer. With more, the second announce cannot
    /// pick the ones not reached yet: it carries one offer for each other peer, up to what
    /// the first lacked, and a peer reached twice keeps one connection. A tracker that gives
    /// no counts gets them all.
    pub fn worth_sending(&self, response: &AnnounceResponse) -> usize {
        if response.seeders.is_none() && response.leechers.is_none() {
            return self.lacking;
        }
        let counted =
            u64::from(response.seeders.unwrap_or(0)) + u64::from(response.leechers.unwrap_or(0));
        let others = usize::try_from(counted.saturating_sub(1)).unwrap_or(usize::MAX);
        if others <= self.sent {
            return 0;
        }
        self.lacking.min(others)
    }
}

/// An offer ready to announce: its connection, the data channel it will open, and its SDP.
pub struct PooledOffer {
    pub pc: RtcPeerConnection,
    pub slot: Slot,
    pub channel: RtcDataChannel,
    pub sdp: String,
    made: Instant,
}

impl PooledOffer {
    pub fn close(self) {
        self.channel.close();
        self.pc.close();
    }
}

pub struct OfferPool {
    me: Weak<RefCell<OfferPool>>,
    clock: Clock,
    ice_servers: Vec<String>,
    budget: Rc<ConnectionBudget>,
    target: usize,
    ready: VecDeque<PooledOffer>,
    /// Offers being gathered for the pool now.
    gathering: usize,
    last_taken: Option<Instant>,
    /// Announces waiting for an offer being gathered (never more than `gathering`).
    waiters: VecDeque<oneshot::Sender<PooledOffer>>,
    closed: bool,
}

impl OfferPool {
    /// A pool that keeps `target` offers ready (0: none, every offer is made when needed),
    /// and starts gathering them now.
    pub fn new(
        clock: Clock,
        ice_servers: Vec<String>,
        budget: Rc<ConnectionBudget>,
        target: usize,
    ) -> Rc<RefCell<OfferPool>> {
        let pool = Rc::new_cyclic(|me| {
            RefCell::new(OfferPool {
                me: me.clone(),
                clock,
                ice_servers,
                budget,
                target: target.min(MAX_TARGET),
                ready: VecDeque::new(),
                gathering: 0,
                last_taken: None,
                waiters: VecDeque::new(),
                closed: false,
            })
        });
        pool.borrow_mut().refill();
        pool
    }

    /// A ready offer, or one the pool is gathering now (waited for: starting another
    /// gathering beside it would only slow both); `None` when the pool has neither.
    pub async fn take(pool: &Rc<RefCell<OfferPool>>) -> Option<PooledOffer> {
        let waiting = {
            let mut p = pool.try_borrow_mut().ok()?;
            p.last_taken = Some(p.clock.now());
            if let Some(offer) = p.ready.pop_front() {
                return Some(offer);
            }
            if p.gathering <= p.waiters.len() {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            p.waiters.push_back(tx);
            rx
        };
        waiting.await.ok()
    }

    /// A ready offer, without waiting for one being gathered.
    pub fn take_ready(&mut self) -> Option<PooledOffer> {
        self.last_taken = Some(self.clock.now());
        self.ready.pop_front()
    }

    /// Called on the client's tick: renews old offers and tops the pool up.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        while self.ready.front().is_some_and(|o| now.saturating_since(o.made) >= MAX_AGE) {
            if let Some(old) = self.ready.pop_front() {
                old.close();
            }
        }
        self.refill_unless_drawn();
    }

    fn refill_unless_drawn(&mut self) {
        let now = self.clock.now();
        if self.last_taken.is_some_and(|t| now.saturating_since(t) < REFILL_PAUSE) {
            return;
        }
        self.refill();
    }

    /// Closes the oldest ready offer, so that its slot of the connection budget goes to a
    /// connection that needs one now; false when none is ready.
    pub fn yield_slot(&mut self) -> bool {
        match self.ready.pop_front() {
            Some(offer) => {
                offer.close();
                true
            }
            None => false,
        }
    }

    /// Closes every pooled connection; the pool makes no more.
    pub fn close(&mut self) {
        self.closed = true;
        self.waiters.clear();
        for offer in self.ready.drain(..) {
            offer.close();
        }
    }

    fn refill(&mut self) {
        // An empty pool gathers one offer alone, then the others: in a Chromium that has just
        // started, five gathered side by side were all ready only after ~85 ms, one alone
        // after 25-35 ms, and an announce can leave with the first (see `TorrentDriver`).
        let first_alone = self.ready.is_empty() && self.gathering == 0;
        // Never the budget's last slot: that one is for a peer's offer or a torrent's own.
        // Offers being gathered claim theirs only once their connection exists.
        while !self.closed
            && self.ready.len() + self.gathering < self.target
            && self.budget.free() > self.gathering + 1
        {
            if first_alone && self.gathering == 1 {
                break;
            }
            self.gathering += 1;
            let me = self.me.clone();
            let ice_servers = self.ice_servers.clone();
            let budget = self.budget.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // The first offers of a page would each generate a certificate otherwise.
                rtc::prepare_certificate().await;
                let made = match rtc::peer_connection(&ice_servers, &budget) {
                    Ok((pc, slot)) => {
                        rtc::make_offer(&pc).await.map(|(channel, sdp)| (pc, slot, channel, sdp))
                    }
                    Err(e) => Err(e),
                };
                let pool = me.upgrade();
                let Some(mut pool) = pool.as_ref().and_then(|p| p.try_borrow_mut().ok()) else {
                    if let Ok((pc, _, channel, _)) = made {
                        channel.close();
                        pc.close();
                    }
                    return;
                };
                pool.gathering -= 1;
                match made {
                    Ok((pc, slot, channel, sdp)) => {
                        let offer = PooledOffer { pc, slot, channel, sdp, made: pool.clock.now() };
                        if pool.closed {
                            return offer.close();
                        }
                        let mut unclaimed = Some(offer);
                        while let Some(offer) = unclaimed.take() {
                            let Some(waiter) = pool.waiters.pop_front() else {
                                pool.ready.push_back(offer);
                                break;
                            };
                            // A waiter that gave up hands the offer back.
                            unclaimed = waiter.send(offer).err();
                        }
                        // The ones held back while the first was gathered alone.
                        pool.refill_unless_drawn();
                    }
                    // Not retried before the next tick: a browser that refuses to make
                    // offers would refuse again at once. A waiter too many is let go.
                    Err(e) => {
                        log(&format!("gathering an offer for the pool failed: {e:?}"));
                        if pool.waiters.len() > pool.gathering {
                            pool.waiters.pop_back();
                        }
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(seeders: Option<u32>, leechers: Option<u32>) -> AnnounceResponse {
        AnnounceResponse { seeders, leechers, ..AnnounceResponse::empty() }
    }

    #[test]
    fn more_offers_only_for_peers_not_yet_reached() {
        let short = Shortfall { lacking: 4, sent: 1 };
        // Us and one seeder: the one offer sent reaches it, nobody is left.
        assert_eq!(short.worth_sending(&counts(Some(1), Some(1))), 0);
        // Us alone in the swarm.
        assert_eq!(short.worth_sending(&counts(Some(0), Some(1))), 0);
        // Us and three others: one offer for each, the one reached already included.
        assert_eq!(short.worth_sending(&counts(Some(2), Some(2))), 3);
        // A big swarm: all four.
        assert_eq!(short.worth_sending(&counts(Some(300), Some(90))), 4);
        // No counts: all four, we cannot tell.
        assert_eq!(short.worth_sending(&counts(None, None)), 4);
        // Counts that do not include us (or are stale) never make it send more than lacking.
        assert_eq!(short.worth_sending(&counts(Some(u32::MAX), Some(u32::MAX))), 4);
        assert_eq!(Shortfall { lacking: 0, sent: 5 }.worth_sending(&counts(Some(50), None)), 0);
    }
}
