//! Offers gathered ahead of need.
//!
//! Every announce to a WebSocket tracker carries offers with their ICE candidates (no
//! trickle), and gathering them was the longest wait between a pasted magnet and its first
//! peer: ~150 ms in Chromium for an announce's five at once, longer than signalling, the
//! connection and the metadata together (~35 ms in a fresh page since [`crate::rtc`] sends
//! an SDP once its host candidates are in). So the client keeps a few offers gathered while it
//! is idle, and an announce takes them and goes out at once.
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
use web_sys::{RtcDataChannel, RtcPeerConnection};

use crate::clock::Clock;
use crate::{log, rtc};

/// A pooled offer older than this is closed and gathered again.
pub const MAX_AGE: Duration = Duration::from_secs(25);
/// After an offer is taken, the pool waits this long before it gathers replacements.
pub const REFILL_PAUSE: Duration = Duration::from_secs(2);
/// The most offers a client keeps ready (each one an open `RTCPeerConnection`).
pub const MAX_TARGET: usize = 10;

/// An offer ready to announce: its connection, the data channel it will open, and its SDP.
pub struct PooledOffer {
    pub pc: RtcPeerConnection,
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
    pub fn new(clock: Clock, ice_servers: Vec<String>, target: usize) -> Rc<RefCell<OfferPool>> {
        let pool = Rc::new_cyclic(|me| {
            RefCell::new(OfferPool {
                me: me.clone(),
                clock,
                ice_servers,
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

    /// Called on the client's tick: renews old offers and tops the pool up.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        while self.ready.front().is_some_and(|o| now.saturating_since(o.made) >= MAX_AGE) {
            if let Some(old) = self.ready.pop_front() {
                old.close();
            }
        }
        if self.last_taken.is_some_and(|t| now.saturating_since(t) < REFILL_PAUSE) {
            return;
        }
        self.refill();
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
        while !self.closed && self.ready.len() + self.gathering < self.target {
            self.gathering += 1;
            let me = self.me.clone();
            let ice_servers = self.ice_servers.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // The first offers of a page would each generate a certificate otherwise.
                rtc::prepare_certificate().await;
                let made = match rtc::peer_connection(&ice_servers) {
                    Ok(pc) => rtc::make_offer(&pc).await.map(|(channel, sdp)| (pc, channel, sdp)),
                    Err(e) => Err(e),
                };
                let pool = me.upgrade();
                let Some(mut pool) = pool.as_ref().and_then(|p| p.try_borrow_mut().ok()) else {
                    if let Ok((pc, channel, _)) = made {
                        channel.close();
                        pc.close();
                    }
                    return;
                };
                pool.gathering -= 1;
                match made {
                    Ok((pc, channel, sdp)) => {
                        let offer = PooledOffer { pc, channel, sdp, made: pool.clock.now() };
                        if pool.closed {
                            return offer.close();
                        }
                        let mut offer = offer;
                        while let Some(waiter) = pool.waiters.pop_front() {
                            // A waiter that gave up hands the offer back.
                            match waiter.send(offer) {
                                Ok(()) => return,
                                Err(back) => offer = back,
                            }
                        }
                        pool.ready.push_back(offer);
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
