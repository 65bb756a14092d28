//! Peers arriving and leaving: dialling addresses from the peer book, admitting handshakes
//! (bans, ourselves, duplicates, simultaneous opens), greeting a new peer with what we have,
//! and forgetting a departed one (its requests go back to the pool, its pieces out of the
//! availability counts).

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Action, DisconnectReason, ProtocolViolation, Refusal, Torrent};
use crate::bitfield::Bitfield;
use crate::extension::ExtendedHandshake;
use crate::peer::{Direction, Peer};
use crate::time::Instant;
use crate::types::{PeerKey, PeerSource};
use crate::wire::{Handshake, Message};

/// Departed peers remembered for blame.
const MAX_DEPARTED: usize = 512;

impl Torrent {
    /// Learns addresses to dial, from `source`.
    pub fn add_peer_addrs(
        &mut self,
        now: Instant,
        source: PeerSource,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) {
        for addr in addrs {
            self.book.add(addr, now, source);
        }
        self.connect_more(now);
    }

    /// An outgoing connection finished its handshake.
    pub fn on_connected(&mut self, now: Instant, key: PeerKey, remote: &Handshake) -> bool {
        self.clock = self.clock.max(now);
        let Some(addr) = self.connecting.remove(&key) else { return false };
        self.resolve_simultaneous_open(now, remote, Direction::Outgoing);
        if let Err(refusal) = self.admit(remote, Some(addr)) {
            if refusal == Refusal::SelfConnection || refusal == Refusal::WrongTorrent {
                self.book.forget(addr);
            } else {
                self.book.on_disconnected(addr, now);
            }
            let reason = match refusal {
                Refusal::SelfConnection => DisconnectReason::SelfConnection,
                Refusal::Banned => DisconnectReason::Banned,
                // `admit` does not count connections; only the duplicate check is left.
                Refusal::Duplicate | Refusal::TooManyConnections => DisconnectReason::Duplicate,
                Refusal::WrongTorrent => {
                    DisconnectReason::Protocol(ProtocolViolation::WrongTorrent)
                }
            };
            self.actions.push_back(Action::Disconnect { peer: key, reason });
            return false;
        }
        let source = self.book.source(addr).unwrap_or(PeerSource::Manual);
        self.add_peer(now, key, Some(addr), remote, Direction::Outgoing, source);
        true
    }

    /// A dial failed or its handshake did.
    pub fn on_connect_failed(&mut self, now: Instant, key: PeerKey) {
        if let Some(addr) = self.connecting.remove(&key) {
            self.book.on_failed(addr, now);
            self.connect_more(now);
        }
    }

    /// A peer dialled us and sent a handshake for this torrent (`source`: `Incoming` over
    /// TCP, `WebRtc` for a data channel). On success the driver sends our handshake back and
    /// treats the connection as `PeerKey`.
    pub fn on_incoming(
        &mut self,
        now: Instant,
        addr: Option<SocketAddr>,
        source: PeerSource,
        remote: &Handshake,
    ) -> Result<PeerKey, Refusal> {
        self.clock = self.clock.max(now);
        if self.peers.len() + self.connecting.len() >= self.config.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        if remote.info_hash == self.info_hash && !addr.is_some_and(|a| self.book.is_banned(a.ip()))
        {
            self.resolve_simultaneous_open(now, remote, Direction::Incoming);
        }
        self.admit(remote, addr)?;
        let key = self.new_key();
        self.add_peer(now, key, addr, remote, Direction::Incoming, source);
        Ok(key)
    }

    pub(super) fn admit(
        &self,
        remote: &Handshake,
        addr: Option<SocketAddr>,
    ) -> Result<(), Refusal> {
        if remote.info_hash != self.info_hash {
            return Err(Refusal::WrongTorrent);
        }
        if remote.peer_id == self.peer_id {
            return Err(Refusal::SelfConnection);
        }
        if addr.is_some_and(|a| self.book.is_banned(a.ip())) {
            return Err(Refusal::Banned);
        }
        if self.peers.values().any(|p| p.peer_id == remote.peer_id) {
            return Err(Refusal::Duplicate);
        }
        Ok(())
    }

    /// Two peers that dialled each other at the same time each end up with two connections.
    /// Both sides must keep the same one, or each drops the one the other kept: the rule is
    /// to keep the connection dialled by the peer with the lower peer id.
    pub(super) fn resolve_simultaneous_open(
        &mut self,
        now: Instant,
        remote: &Handshake,
        new: Direction,
    ) {
        let Some(existing) = self.peers.values().find(|p| p.peer_id == remote.peer_id) else {
            return;
        };
        if existing.direction == new {
            return; // a plain duplicate: `admit` refuses the new one
        }
        let new_is_ours = new == Direction::Outgoing;
        let we_are_lower = self.peer_id.0 < remote.peer_id.0;
        if new_is_ours == we_are_lower {
            let key = existing.key;
            self.drop_peer(now, key, DisconnectReason::Duplicate);
        }
    }

    pub(super) fn new_key(&mut self) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        key
    }

    pub(super) fn add_peer(
        &mut self,
        now: Instant,
        key: PeerKey,
        addr: Option<SocketAddr>,
        remote: &Handshake,
        direction: Direction,
        source: PeerSource,
    ) {
        let mut peer = Peer::new(key, addr, remote.peer_id, direction, now);
        peer.source = source;
        *self.stats.connections_by_source.entry(source.name()).or_default() += 1;
        peer.supports_fast = remote.supports_fast();
        peer.supports_extensions = remote.supports_extension_protocol();
        if let Some(info) = &self.info {
            peer.has = Bitfield::new(info.piece_count());
        }
        self.peers.insert(key, peer);

        // Our bitfield first: it is only valid as the first message.
        let have_count = self.have.count_ones();
        let fast = remote.supports_fast();
        if self.started && have_count > 0 {
            if fast && self.have.is_full() {
                self.send(key, Message::HaveAll);
            } else {
                self.send(key, Message::Bitfield(Bytes::copy_from_slice(self.have.as_bytes())));
            }
        } else if fast {
            self.send(key, Message::HaveNone);
        }
        if remote.supports_extension_protocol() {
            let hs = self.our_extended_handshake(addr);
            self.send(key, Message::Extended { id: 0, payload: hs });
        }
    }

    pub(super) fn our_extended_handshake(&self, addr: Option<SocketAddr>) -> Bytes {
        let mut hs = ExtendedHandshake::ours(
            self.info_bytes.as_ref().map(|b| b.len() as u64),
            &self.config.client_name,
            self.config.listen_port,
        );
        hs.request_queue =
            Some(crate::peer::MAX_QUEUE_TARGET.min(self.config.max_upload_queue as u32));
        hs.your_ip = addr.map(|a| a.ip());
        hs.encode()
    }

    /// The connection closed (or the driver gave up on it).
    pub fn on_disconnected(&mut self, now: Instant, key: PeerKey) {
        if let Some(addr) = self.connecting.remove(&key) {
            self.book.on_failed(addr, now);
            self.connect_more(now);
            return;
        }
        self.forget_peer(now, key);
        self.connect_more(now);
    }

    pub(super) fn forget_peer(&mut self, now: Instant, key: PeerKey) -> Option<Peer> {
        let peer = self.peers.remove(&key)?;
        self.forget_uploads(key);
        if let Some(addr) = peer.addr {
            self.departed.insert(key, addr.ip());
            if self.departed.len() > MAX_DEPARTED {
                self.departed.pop_first();
            }
        }
        if let Some(picker) = &mut self.picker {
            for block in &peer.requests {
                picker.on_unrequest(*block, key);
            }
            if peer.is_seed {
                picker.remove_seed();
            } else {
                for piece in peer.has.iter_ones() {
                    picker.remove_available(piece);
                }
            }
        }
        if let Some(md) = &mut self.metadata {
            md.on_peer_gone(key.0);
        }
        self.choker.remove(key);
        if let (Some(addr), Direction::Outgoing) = (peer.addr, peer.direction) {
            self.book.on_disconnected(addr, now);
        }
        // Its blocks are free again: let the others pick them up.
        if !peer.requests.is_empty() {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for other in keys {
                self.fill_requests(now, other);
            }
            self.fill_web_seeds(now);
        }
        Some(peer)
    }

    pub(super) fn drop_peer(&mut self, now: Instant, key: PeerKey, reason: DisconnectReason) {
        if self.forget_peer(now, key).is_some() {
            if let DisconnectReason::Protocol(violation) = &reason {
                *self.stats.protocol_violations.entry(violation.kind()).or_default() += 1;
            }
            self.actions.push_back(Action::Disconnect { peer: key, reason });
        }
    }

    /// Two seeds have nothing to say to each other.
    pub(super) fn maybe_drop_useless(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else { return };
        if self.completed && peer.is_seed && self.have.is_full() {
            self.drop_peer(now, key, DisconnectReason::NothingToExchange);
        }
    }

    pub(super) fn connect_more(&mut self, now: Instant) {
        // A magnet has to talk to peers before it can start; a torrent waits for its recheck.
        if !self.started && self.info.is_some() {
            return;
        }
        // A seed dials too: some peers never dial (Transmission ignores loopback peers, and
        // peers behind NAT cannot be reached otherwise). Seeds it reaches are dropped once
        // their bitfield shows it.
        while self.peers.len() + self.connecting.len() < self.config.max_connections {
            let Some(addr) = self.book.next_to_connect(now) else { break };
            let key = self.new_key();
            self.connecting.insert(key, addr);
            self.actions.push_back(Action::Connect { peer: key, addr });
        }
    }
}
