//! Our offers the tracker may have forwarded, waiting for their answers, by offer id.

use std::collections::BTreeMap;

use shoal_proto::{InfoHash, Instant};

use super::{OfferDrop, OfferId};

/// Offers waiting for answers per socket. Each holds a WebRTC connection in the driver, so
/// this is a bound on those too; expiry normally empties the table long before it fills.
pub const MAX_PENDING_OFFERS: usize = 1024;

struct PendingOffer {
    info_hash: InfoHash,
    expires: Instant,
}

/// Ordered (not hashed) so expiry reports offers in the same order on every run.
#[derive(Default)]
pub(super) struct PendingOffers {
    offers: BTreeMap<OfferId, PendingOffer>,
}

impl PendingOffers {
    /// How many more offers fit.
    pub(super) fn room(&self) -> usize {
        MAX_PENDING_OFFERS.saturating_sub(self.offers.len())
    }

    pub(super) fn insert(
        &mut self,
        id: OfferId,
        info_hash: InfoHash,
        expires: Instant,
    ) -> Result<(), OfferDrop> {
        // Replacing would orphan the first offer's connection in the driver.
        if self.offers.contains_key(&id) {
            return Err(OfferDrop::Duplicate);
        }
        if self.room() == 0 {
            return Err(OfferDrop::TooMany);
        }
        self.offers.insert(id, PendingOffer { info_hash, expires });
        Ok(())
    }

    pub(super) fn contains(&self, id: &OfferId) -> bool {
        self.offers.contains_key(id)
    }

    /// Removes the offer; the torrent it was made for, if it was waiting.
    pub(super) fn take(&mut self, id: &OfferId) -> Option<InfoHash> {
        self.offers.remove(id).map(|o| o.info_hash)
    }

    /// Removes every offer made for `info_hash`.
    pub(super) fn take_torrent(&mut self, info_hash: &InfoHash) -> Vec<OfferId> {
        self.take_where(|o| o.info_hash == *info_hash)
    }

    /// Removes every offer that expired by `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<OfferId> {
        self.take_where(|o| o.expires <= now)
    }

    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.offers.values().map(|o| o.expires).min()
    }

    fn take_where(&mut self, mut pred: impl FnMut(&PendingOffer) -> bool) -> Vec<OfferId> {
        let mut taken = Vec::new();
        self.offers.retain(|id, o| {
            let take = pred(o);
            if take {
                taken.push(*id);
            }
            !take
        });
        taken
    }
}
