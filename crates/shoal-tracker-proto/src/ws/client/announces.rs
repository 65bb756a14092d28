//! Announces waiting for the tracker's answer.
//!
//! The protocol has no request ids: an announce answer (or failure) names only its torrent,
//! and the tracker answers one socket's announces in order. So each torrent keeps a queue and
//! an answer goes to its oldest entry. Announces made while the socket is down wait in
//! `unsent` and go out, in order, when it connects.

use std::collections::{BTreeMap, VecDeque};

use shoal_proto::{InfoHash, Instant};

use super::AnnounceTicket;
use crate::ws::WsAnnounce;

/// Announces waiting per torrent and socket, sent or not. A tracker that never answers makes
/// them time out long before this fills; a driver that announces in a loop is refused.
pub const MAX_PENDING_ANNOUNCES: usize = 256;

/// A sent announce. `ticket` is `None` for a rejoin after a reconnect: its answer is expected
/// (and must be consumed, or it would be taken for the next announce's) but nobody waits for it.
struct Sent {
    ticket: Option<AnnounceTicket>,
    deadline: Instant,
}

/// An announce made while the socket was down, offers included.
pub(super) struct Unsent {
    pub(super) ticket: AnnounceTicket,
    pub(super) deadline: Instant,
    pub(super) announce: WsAnnounce,
}

/// Who an answer from the tracker is for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answered {
    Ticket(AnnounceTicket),
    Rejoin,
    Nobody,
}

/// Announces that will get no answer: timed out, or their connection is gone.
#[derive(Default)]
pub(super) struct Failed {
    /// By ticket, oldest first.
    pub(super) sent: Vec<(AnnounceTicket, InfoHash)>,
    pub(super) unsent: Vec<Unsent>,
}

#[derive(Default)]
pub(super) struct Announces {
    next_ticket: u64,
    sent: BTreeMap<InfoHash, VecDeque<Sent>>,
    unsent: Vec<Unsent>,
}

impl Announces {
    pub(super) fn new_ticket(&mut self) -> AnnounceTicket {
        self.next_ticket += 1;
        AnnounceTicket(self.next_ticket)
    }

    /// Announces of `info_hash` waiting, sent or not.
    pub(super) fn in_flight(&self, info_hash: &InfoHash) -> usize {
        let sent = self.sent.get(info_hash).map_or(0, VecDeque::len);
        sent + self.unsent.iter().filter(|u| u.announce.info_hash == *info_hash).count()
    }

    pub(super) fn push_sent(
        &mut self,
        info_hash: InfoHash,
        ticket: Option<AnnounceTicket>,
        deadline: Instant,
    ) {
        self.sent.entry(info_hash).or_default().push_back(Sent { ticket, deadline });
    }

    pub(super) fn push_unsent(&mut self, unsent: Unsent) {
        self.unsent.push(unsent);
    }

    pub(super) fn has_any_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// The torrents with an announce waiting for the socket.
    pub(super) fn unsent_torrents(&self) -> Vec<InfoHash> {
        self.unsent.iter().map(|u| u.announce.info_hash).collect()
    }

    /// Every unsent announce, oldest first.
    pub(super) fn take_unsent(&mut self) -> Vec<Unsent> {
        std::mem::take(&mut self.unsent)
    }

    /// The unsent announces of one torrent, oldest first.
    pub(super) fn take_unsent_of(&mut self, info_hash: &InfoHash) -> Vec<Unsent> {
        let (taken, kept) =
            self.take_unsent().into_iter().partition(|u| u.announce.info_hash == *info_hash);
        self.unsent = kept;
        taken
    }

    /// An answer for `info_hash` arrived: it is for the oldest announce of that torrent.
    pub(super) fn answer(&mut self, info_hash: &InfoHash) -> Answered {
        let Some(queue) = self.sent.get_mut(info_hash) else { return Answered::Nobody };
        let answered = match queue.pop_front() {
            Some(Sent { ticket: Some(t), .. }) => Answered::Ticket(t),
            Some(Sent { ticket: None, .. }) => Answered::Rejoin,
            None => Answered::Nobody,
        };
        if queue.is_empty() {
            self.sent.remove(info_hash);
        }
        answered
    }

    /// An answer that names no torrent (some trackers' failures): for the oldest sent
    /// announce of any torrent.
    pub(super) fn answer_oldest(&mut self) -> (Option<InfoHash>, Answered) {
        let oldest = self
            .sent
            .iter()
            .filter_map(|(hash, q)| q.front().map(|s| (s.deadline, *hash)))
            .min()
            .map(|(_, hash)| hash);
        match oldest {
            Some(hash) => (Some(hash), self.answer(&hash)),
            None => (None, Answered::Nobody),
        }
    }

    /// Removes the announces whose deadline passed by `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Failed {
        self.take_where(|deadline| deadline <= now)
    }

    /// Removes every announce: the socket closed (or never opened).
    pub(super) fn take_all(&mut self) -> Failed {
        self.take_where(|_| true)
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let sent = self.sent.values().flatten().map(|s| s.deadline);
        sent.chain(self.unsent.iter().map(|u| u.deadline)).min()
    }

    fn take_where(&mut self, mut pred: impl FnMut(Instant) -> bool) -> Failed {
        let mut failed = Failed::default();
        for (hash, queue) in &mut self.sent {
            queue.retain(|s| {
                let take = pred(s.deadline);
                if let (true, Some(ticket)) = (take, s.ticket) {
                    failed.sent.push((ticket, *hash));
                }
                !take
            });
        }
        self.sent.retain(|_, q| !q.is_empty());
        failed.sent.sort();
        let (unsent, kept) = self.take_unsent().into_iter().partition(|u| pred(u.deadline));
        failed.unsent = unsent;
        self.unsent = kept;
        failed
    }
}
