//! Peer exchange sent (BEP 11). Each peer that speaks `ut_pex` hears, at most once a minute,
//! which connected peers it has not been told of yet (`added`, with their flags) and which of
//! those it was told of are gone (`dropped`). Only peers that others can dial are shared: those
//! we dialled, and those that dialled us and gave their listen port; a WebRTC peer has no
//! address and a banned one is not passed on. A private torrent (BEP 27) exchanges no peers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::Torrent;
use crate::extension::{pex_flag, PexMessage};
use crate::peer::{Direction, Peer};
use crate::time::Instant;
use crate::types::PeerKey;
use crate::wire::Message;

/// At most one message per peer per this long (BEP 11).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Addresses in one message's `added`, and in its `dropped` (what libtorrent sends at most;
/// the rest waits for the next message).
pub const MAX_PEX_PER_MESSAGE: usize = 50;

/// What one peer has been told.
#[derive(Clone, Debug, Default)]
pub struct PexSent {
    /// When we last looked at what to tell it (sent or not); `None` before the first time.
    last: Option<Instant>,
    /// The addresses it has been told of and not told were dropped.
    told: BTreeSet<SocketAddr>,
}

impl Peer {
    /// The address another peer could dial it at, if any.
    pub fn dialable_addr(&self) -> Option<SocketAddr> {
        let addr = self.addr?;
        match self.direction {
            Direction::Outgoing => Some(addr),
            Direction::Incoming => self.listen_port.map(|port| SocketAddr::new(addr.ip(), port)),
        }
    }

    fn pex_flags(&self) -> u8 {
        let mut flags = 0;
        if self.is_seed {
            flags |= pex_flag::SEED;
        }
        if self.direction == Direction::Outgoing {
            // We reached it: it accepts connections.
            flags |= pex_flag::REACHABLE;
        }
        flags
    }
}

impl Torrent {
    /// Whether peers may be exchanged at all (not for a private torrent, BEP 27).
    pub(super) fn pex_allowed(&self) -> bool {
        !self.info.as_ref().is_some_and(|info| info.private)
    }

    /// Tells each peer whose minute is up what changed among our peers.
    pub(super) fn send_pex(&mut self, now: Instant) {
        if !self.config.peer_exchange || !self.pex_allowed() {
            return;
        }
        let due: Vec<PeerKey> = self
            .peers
            .values()
            .filter(|p| p.extensions.ut_pex != 0)
            .filter(|p| p.pex.last.is_none_or(|last| now.saturating_since(last) >= PEX_INTERVAL))
            .map(|p| p.key)
            .collect();
        if due.is_empty() {
            return;
        }
        let shared: BTreeMap<SocketAddr, u8> = self
            .peers
            .values()
            .filter_map(|p| Some((p.dialable_addr()?, p.pex_flags())))
            .filter(|(addr, _)| !self.book.is_banned(addr.ip()))
            .collect();
        for key in due {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            peer.pex.last = Some(now);
            let own = peer.dialable_addr();
            let told = &peer.pex.told;
            let added: Vec<(SocketAddr, u8)> = shared
                .iter()
                .filter(|(addr, _)| Some(**addr) != own && !told.contains(addr))
                .take(MAX_PEX_PER_MESSAGE)
                .map(|(addr, flags)| (*addr, *flags))
                .collect();
            let dropped: Vec<SocketAddr> = told
                .iter()
                .filter(|addr| !shared.contains_key(addr))
                .take(MAX_PEX_PER_MESSAGE)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            for addr in &dropped {
                peer.pex.told.remove(addr);
            }
            peer.pex.told.extend(added.iter().map(|(addr, _)| *addr));
            let message = PexMessage {
                added: added.iter().map(|(addr, _)| *addr).collect(),
                added_flags: added.iter().map(|(_, flags)| *flags).collect(),
                dropped,
            };
            let id = peer.extensions.ut_pex;
            self.send(key, Message::Extended { id, payload: message.encode() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::testing::Harness;
    use crate::torrent::TorrentConfig;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    /// The PEX messages `to` was sent (draining every action).
    fn pex_to(h: &mut Harness, to: PeerKey) -> Vec<PexMessage> {
        h.sent_to(to)
            .into_iter()
            .filter_map(|m| match m {
                Message::Extended { id, payload } if id != 0 => PexMessage::decode(&payload).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_peer_hears_of_the_others_once_a_minute_with_their_listen_ports() {
        let mut h = Harness::new(TorrentConfig::default(), true);
        let t0 = Instant::ZERO;
        let a = h.peer_at(t0, addr("10.0.0.1:50000"), 6881);
        let b = h.peer_at(t0, addr("10.0.0.2:50001"), 6882);
        // A WebRTC peer: told of the others, never passed on (no address to dial).
        let rtc = h.peer(t0, &[]);
        let hs = crate::extension::ExtendedHandshake::ours(None, "test", None);
        h.t.on_message(t0, rtc, Message::Extended { id: 0, payload: hs.encode() });
        h.actions();

        h.t.handle_timeout(t0 + Duration::from_secs(1));
        let actions = h.actions();
        let pex_for = |key: PeerKey| -> Vec<PexMessage> {
            actions
                .iter()
                .filter_map(|a| match a {
                    crate::torrent::Action::Send {
                        peer,
                        message: Message::Extended { id, payload },
                    } if *peer == key && *id != 0 => PexMessage::decode(payload).ok(),
                    _ => None,
                })
                .collect()
        };
        let to_a = pex_for(a);
        assert_eq!(to_a.len(), 1, "{to_a:?}");
        assert_eq!(to_a[0].added, [addr("10.0.0.2:6882")]);
        // It dialled us: not known to be reachable, and not a seed (it has nothing yet).
        assert_eq!(to_a[0].added_flags, [0]);
        assert_eq!(pex_for(b)[0].added, [addr("10.0.0.1:6881")]);
        assert_eq!(pex_for(rtc)[0].added, [addr("10.0.0.1:6881"), addr("10.0.0.2:6882")]);

        // A newcomer waits for A's minute to be up.
        let c = h.peer_at(t0 + Duration::from_secs(2), addr("10.0.0.3:50002"), 6883);
        h.actions();
        h.t.handle_timeout(t0 + Duration::from_secs(30));
        assert!(pex_to(&mut h, a).is_empty(), "at most one message a minute");
        h.t.handle_timeout(t0 + Duration::from_secs(61));
        let to_a = pex_to(&mut h, a);
        assert_eq!(to_a.len(), 1);
        assert_eq!(to_a[0].added, [addr("10.0.0.3:6883")]);
        assert!(to_a[0].dropped.is_empty());

        // B leaves: A hears it was dropped at its next minute, and nothing else.
        h.t.on_disconnected(t0 + Duration::from_secs(70), b);
        h.t.handle_timeout(t0 + Duration::from_secs(122));
        let to_a = pex_to(&mut h, a);
        assert_eq!(to_a.len(), 1);
        assert!(to_a[0].added.is_empty());
        assert_eq!(to_a[0].dropped, [addr("10.0.0.2:6882")]);
        // Nothing changed since: no message at all.
        h.t.handle_timeout(t0 + Duration::from_secs(183));
        assert!(pex_to(&mut h, a).is_empty());
        assert!(pex_to(&mut h, c).is_empty());
    }

    #[test]
    fn a_message_is_bounded_and_the_rest_follows_a_minute_later() {
        let config = TorrentConfig { max_connections: 200, ..TorrentConfig::default() };
        let mut h = Harness::new(config, true);
        let t0 = Instant::ZERO;
        let listener = h.peer_at(t0, addr("10.1.0.1:40000"), 7000);
        for i in 0..70u16 {
            h.peer_at(
                t0,
                SocketAddr::from(([10, 2, (i / 200) as u8, (i % 200) as u8 + 1], 40000)),
                7000,
            );
        }
        h.actions();
        h.t.handle_timeout(t0 + Duration::from_secs(1));
        let first = pex_to(&mut h, listener);
        assert_eq!(first[0].added.len(), MAX_PEX_PER_MESSAGE);
        h.t.handle_timeout(t0 + Duration::from_secs(62));
        let second = pex_to(&mut h, listener);
        assert_eq!(second[0].added.len(), 70 - MAX_PEX_PER_MESSAGE);
    }

    #[test]
    fn a_private_torrent_exchanges_no_peers_either_way() {
        let mut h = Harness::new_private(TorrentConfig::default(), true);
        let t0 = Instant::ZERO;
        let a = h.peer_at(t0, addr("10.0.0.1:50000"), 6881);
        h.peer_at(t0, addr("10.0.0.2:50001"), 6882);
        h.actions();
        h.t.handle_timeout(t0 + Duration::from_secs(1));
        assert!(pex_to(&mut h, a).is_empty());
        let known = h.t.stats(t0).known_peers;
        let pex = PexMessage { added: vec![addr("10.9.9.9:1")], ..PexMessage::default() };
        let id = crate::extension::LocalExtension::Pex.id();
        h.t.on_message(t0, a, Message::Extended { id, payload: pex.encode() });
        assert_eq!(h.t.stats(t0).known_peers, known, "a PEX address was taken");
    }
}
