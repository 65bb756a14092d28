//! The in-memory network: connections, what travels on them, and the per-node upload link.
//!
//! A connection is a pair of ordered, reliable byte pipes, as TCP (or a WebRTC data channel)
//! gives the native driver, carried at message granularity. A frame leaving a node first
//! waits for the node's upload link, which serves the node's connections round-robin one frame
//! at a time (so a `have` is not stuck behind megabytes of blocks to another peer), then
//! crosses the connection's latency, then waits for the receiver's download link (first come,
//! first served). Latency is fixed per connection, so frames arrive in the order they were sent.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal_proto::wire::{FrameDecoder, Handshake, Message, HANDSHAKE_LEN};
use shoal_proto::PeerKey;

use crate::node::NodeId;

/// Identifies a connection for the lifetime of a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Which end of a connection: the one that dialled, or the one that accepted.
pub(crate) const DIALER: usize = 0;
pub(crate) const LISTENER: usize = 1;

/// What travels on a connection.
#[derive(Clone, Debug)]
pub(crate) enum Frame {
    Handshake(Handshake),
    /// A message carried as a value (the fast path).
    Message(Message),
    /// Bytes for the receiver's frame decoder: encoded messages when the simulation runs the
    /// codec, or raw bytes a test injects.
    Bytes(Bytes),
    /// The sender closed its end (TCP FIN); nothing follows.
    Fin,
}

impl Frame {
    /// Bytes on the wire, which is what bandwidth is spent on.
    pub(crate) fn wire_len(&self) -> u64 {
        match self {
            Frame::Handshake(_) => HANDSHAKE_LEN as u64,
            Frame::Message(m) => m.encoded_len() as u64,
            Frame::Bytes(b) => b.len() as u64,
            Frame::Fin => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndState {
    /// Dialler: the TCP connection is being set up or our handshake is waiting for theirs.
    Dialing,
    /// Listener: waiting for the dialler's handshake.
    Accepting,
    /// Both handshakes done; the core knows the connection by `key`.
    Open,
    /// Closed (by us, by the peer, or because the node vanished). Frames arriving are dropped.
    Closed,
}

pub(crate) struct End {
    pub(crate) node: NodeId,
    /// The core's key for this connection (a listener gets one once its core accepts).
    pub(crate) key: Option<PeerKey>,
    pub(crate) state: EndState,
    /// Frames waiting for the node's upload link, and their size in bytes.
    pub(crate) out: VecDeque<Frame>,
    pub(crate) out_bytes: u64,
    /// Received bytes not yet decoded (codec mode, injected bytes).
    pub(crate) inbuf: BytesMut,
    pub(crate) decoder: FrameDecoder,
}

impl End {
    pub(crate) fn new(node: NodeId, key: Option<PeerKey>, state: EndState) -> Self {
        End {
            node,
            key,
            state,
            out: VecDeque::new(),
            out_bytes: 0,
            inbuf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }
}

impl End {
    pub(crate) fn push_out(&mut self, frame: Frame) {
        self.out_bytes += frame.wire_len();
        self.out.push_back(frame);
    }

    pub(crate) fn pop_out(&mut self) -> Option<Frame> {
        let frame = self.out.pop_front()?;
        self.out_bytes = self.out_bytes.saturating_sub(frame.wire_len());
        Some(frame)
    }

    /// Drops everything not yet sent (the connection is gone).
    pub(crate) fn clear_out(&mut self) {
        self.out.clear();
        self.out_bytes = 0;
    }
}

pub(crate) struct Conn {
    pub(crate) ends: [End; 2],
    /// One-way delay.
    pub(crate) latency: Duration,
}

impl Conn {
    pub(crate) fn other(side: usize) -> usize {
        1 - side
    }

    /// Nothing can happen on it any more: both ends closed, nothing waiting to be sent.
    fn is_finished(&self) -> bool {
        self.ends.iter().all(|e| e.state == EndState::Closed && e.out.is_empty())
    }
}

/// Every connection of a simulation by id, with how many scheduled events still refer to it.
///
/// Ids are handed out in sequence and never reused, so a connection lives at index `id`: a
/// lookup per frame is an index, not a tree search (which cost more than anything else the
/// simulator did per frame in a big swarm). A connection is freed once it is finished and no
/// event refers to it, so a long run with churn keeps only 8 bytes per past connection.
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<Option<Box<(Conn, u32)>>>,
    live: usize,
}

impl ConnTable {
    fn index(id: ConnId) -> usize {
        usize::try_from(id.0).unwrap_or(usize::MAX)
    }

    pub(crate) fn insert(&mut self, id: ConnId, conn: Conn) {
        let i = Self::index(id);
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace(Box::new((conn, 0))).is_none() {
            self.live += 1;
        }
    }

    pub(crate) fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.slots.get(Self::index(*id))?.as_deref().map(|(conn, _)| conn)
    }

    pub(crate) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        self.slots.get_mut(Self::index(*id))?.as_deref_mut().map(|(conn, _)| conn)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.slots.iter_mut().filter_map(|s| s.as_deref_mut().map(|(conn, _)| conn))
    }

    /// Connections not yet freed.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// An event referring to `id` was scheduled: it must stay until the event is handled.
    pub(crate) fn hold(&mut self, id: ConnId) {
        if let Some(Some(entry)) = self.slots.get_mut(Self::index(id)) {
            entry.1 += 1;
        }
    }

    /// An event referring to `id` was handled (call after handling it): frees the
    /// connection if it was the last one and the connection is finished.
    pub(crate) fn release(&mut self, id: ConnId) {
        let i = Self::index(id);
        let Some(Some(entry)) = self.slots.get_mut(i) else { return };
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 && entry.0.is_finished() {
            self.slots[i] = None;
            self.live -= 1;
        }
    }
}

impl std::ops::Index<&ConnId> for ConnTable {
    type Output = Conn;

    fn index(&self, id: &ConnId) -> &Conn {
        self.get(id).expect("a connection that is still referred to is not freed")
    }
}

/// A node's upload link: the connections with frames waiting, served round-robin.
#[derive(Default)]
pub(crate) struct Uplink {
    pub(crate) ring: VecDeque<(ConnId, usize)>,
    pub(crate) busy: bool,
}

/// How long `bytes` take at `rate` bytes per second (`None`: unlimited, no time at all; a
/// rate of 0 counts as 1 byte/s rather than forever).
pub(crate) fn transmit_time(bytes: u64, rate: Option<u64>) -> Duration {
    match rate {
        None => Duration::ZERO,
        Some(rate) => {
            let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_time_scales_with_size_and_rate() {
        assert_eq!(transmit_time(1000, None), Duration::ZERO);
        assert_eq!(transmit_time(1000, Some(1000)), Duration::from_secs(1));
        assert_eq!(transmit_time(16384, Some(1 << 20)), Duration::from_micros(15625));
    }
}
