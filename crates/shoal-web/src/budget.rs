//! How many `RTCPeerConnection`s the client holds at once, over all its torrents.
//!
//! Chromium refuses a page's 501st `RTCPeerConnection` ("Cannot create so many
//! PeerConnections"), and it counts closed ones until the garbage collector has taken them:
//! measured in Chromium 156, 500 made and closed back to back left the page unable to make
//! another, while a pause of 30 s let it make 450 more. Each torrent keeps to its own
//! connection limit; this budget keeps their sum, plus the offer pool, under one bound for the
//! page, so that a client with many torrents degrades to fewer peers per torrent instead of
//! failing to connect at all. Offers in the pool hold slots too, but give them up first: the
//! pool gathers only while more than one slot is free, and a connection that needs a slot
//! when none is free closes a pooled offer for it.

use std::cell::Cell;
use std::rc::Rc;

/// Connections a client holds at most unless told otherwise: well below Chromium's 500, which
/// also counts connections closed but not yet collected and those of the rest of the page.
pub const DEFAULT_MAX: usize = 200;

#[derive(Debug)]
pub struct ConnectionBudget {
    live: Cell<usize>,
    max: usize,
}

/// One connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Slot(Rc<ConnectionBudget>);

impl ConnectionBudget {
    pub fn new(max: usize) -> Rc<ConnectionBudget> {
        Rc::new(ConnectionBudget { live: Cell::new(0), max })
    }

    /// A slot for one more connection, or `None` when the client holds `max` already.
    pub fn claim(self: &Rc<Self>) -> Option<Slot> {
        if !self.has_room() {
            return None;
        }
        self.live.set(self.live.get() + 1);
        Some(Slot(self.clone()))
    }

    pub fn has_room(&self) -> bool {
        self.free() > 0
    }

    /// Slots not held now.
    pub fn free(&self) -> usize {
        self.max.saturating_sub(self.live.get())
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let budget = &self.0;
        budget.live.set(budget.live.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let budget = ConnectionBudget::new(2);
        let a = budget.claim().expect("first");
        let b = budget.claim().expect("second");
        assert!(budget.claim().is_none(), "the third is refused");
        assert_eq!(budget.free(), 0);
        drop(a);
        assert!(budget.has_room());
        let c = budget.claim().expect("room again after a drop");
        drop((b, c));
        assert_eq!(budget.free(), 2);
    }
}
