//! Every uTP connection on one UDP socket: routes datagrams to connections by (address,
//! connection id), accepts SYNs within bounds, and collects what the connections send.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::conn::{Connection, UtpConfig};
use super::packet::{Packet, PacketError, PacketType};
use crate::time::Instant;

/// A connection's handle in its [`Endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// Bounds on what strangers can make an endpoint hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLimits {
    /// Connections at once, either way.
    pub max_connections: usize,
    /// Accepted connections the application has not taken yet; SYNs past that are refused.
    pub max_backlog: usize,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits { max_connections: 1024, max_backlog: 64 }
    }
}

/// What [`Endpoint::handle`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// For a connection (maybe a new one, then also in [`Endpoint::accept`]).
    Connection(ConnId),
    /// A SYN refused: too many connections or a full backlog.
    Refused,
    /// For no connection we have.
    Unknown,
    /// Not a uTP packet (another protocol sharing the socket would look here).
    NotUtp(PacketError),
}

pub struct Endpoint {
    config: UtpConfig,
    limits: EndpointLimits,
    rng: fastrand::Rng,
    next_id: u64,
    routes: HashMap<(SocketAddr, u16), ConnId>,
    conns: HashMap<ConnId, (SocketAddr, Connection)>,
    backlog: VecDeque<ConnId>,
    /// Connections that may have something to send.
    pending: VecDeque<ConnId>,
    /// Connections whose application side has news (data, room, state).
    woken: Vec<ConnId>,
}

impl Endpoint {
    /// `seed` feeds connection ids and initial sequence numbers (the driver takes it from a
    /// random source; the simulator from its seed).
    pub fn new(config: UtpConfig, limits: EndpointLimits, seed: u64) -> Self {
        Endpoint {
            config,
            limits,
            rng: fastrand::Rng::with_seed(seed),
            next_id: 0,
            routes: HashMap::new(),
            conns: HashMap::new(),
            backlog: VecDeque::new(),
            pending: VecDeque::new(),
            woken: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn insert(&mut self, addr: SocketAddr, conn: Connection) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.routes.insert((addr, conn.recv_id()), id);
        self.conns.insert(id, (addr, conn));
        self.pending.push_back(id);
        id
    }

    /// Opens a connection to `addr`; `None` when at the connection limit.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        if self.conns.len() >= self.limits.max_connections {
            return None;
        }
        // A receive id free for this address (the peer tells connections apart by it too).
        let recv_id = loop {
            let id = self.rng.u16(..);
            let ours = [(addr, id), (addr, id.wrapping_add(1))];
            if !ours.iter().any(|key| self.routes.contains_key(key)) {
                break id;
            }
        };
        let conn = Connection::connect(self.config, recv_id, self.rng.u16(..), now);
        Some(self.insert(addr, conn))
    }

    /// Takes a datagram from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Received {
        let packet = match Packet::parse(datagram) {
            Ok(p) => p,
            Err(e) => return Received::NotUtp(e),
        };
        let h = &packet.header;
        let key = match h.kind {
            PacketType::Syn => (from, h.connection_id.wrapping_add(1)),
            _ => (from, h.connection_id),
        };
        if let Some(&id) = self.routes.get(&key) {
            if let Some((_, conn)) = self.conns.get_mut(&id) {
                conn.handle(now, &packet);
                if conn.take_wake() {
                    self.woken.push(id);
                }
                self.pending.push_back(id);
                return Received::Connection(id);
            }
        }
        if h.kind != PacketType::Syn {
            return Received::Unknown;
        }
        if self.conns.len() >= self.limits.max_connections
            || self.backlog.len() >= self.limits.max_backlog
        {
            return Received::Refused;
        }
        let conn = Connection::accept(self.config, h, self.rng.u16(..), now);
        let id = self.insert(from, conn);
        self.backlog.push_back(id);
        Received::Connection(id)
    }

    /// The next connection a peer opened.
    pub fn accept(&mut self) -> Option<ConnId> {
        self.backlog.pop_front()
    }

    pub fn conn(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.conns.get_mut(&id).map(|(_, c)| c)
    }

    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.conns.get(&id).map(|(addr, _)| *addr)
    }

    /// Marks a connection as maybe having something to send (after a write, read or close).
    pub fn touch(&mut self, id: ConnId) {
        self.pending.push_back(id);
    }

    /// The next datagram to send, written into `out`: to where.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        while let Some(&id) = self.pending.front() {
            if let Some((addr, conn)) = self.conns.get_mut(&id) {
                if conn.poll_transmit(now, out) {
                    return Some(*addr);
                }
            }
            self.pending.pop_front();
        }
        None
    }

    /// The earliest time any connection wants [`Self::handle_timeout`].
    pub fn timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(|(_, c)| c.timeout()).min()
    }

    /// Runs every due timer; connections with something to send are queued for
    /// [`Self::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, (_, conn)) in &mut self.conns {
            if conn.timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
                if conn.take_wake() {
                    self.woken.push(*id);
                }
                self.pending.push_back(*id);
            }
        }
    }

    /// Connections whose application side has news (data, room, state) since the last call.
    pub fn take_woken(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.woken)
    }

    /// Forgets a connection (closed, and its application side gone).
    pub fn remove(&mut self, id: ConnId) {
        if let Some((addr, conn)) = self.conns.remove(&id) {
            self.routes.remove(&(addr, conn.recv_id()));
        }
        self.backlog.retain(|b| *b != id);
    }
}
