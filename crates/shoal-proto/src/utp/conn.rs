//! One uTP connection, sans IO: a reliable, ordered byte stream over datagrams (BEP 29).
//!
//! The driver feeds it parsed packets ([`Connection::handle`]) and timer expiries
//! ([`Connection::handle_timeout`]), drains datagrams to send ([`Connection::poll_transmit`]),
//! and moves application bytes in ([`Connection::write`]) and out ([`Connection::read`]).
//!
//! Invariants (checked in debug builds by `check`):
//! - `in_flight` holds the sent, not yet cumulatively acknowledged segments, in sequence order
//!   and contiguous: the first is `peer_ack + 1`, the last `seq_nr - 1`.
//! - `to_resend` counts the segments of the flight marked `need_resend` (sending looks for
//!   one only when there is one: a walk of the whole flight per packet sent cost more than
//!   the rest of the sender).
//! - Buffered bytes are bounded: `unsent` + in-flight payload ≤ `send_buffer`; readable +
//!   out-of-order payload ≤ `recv_buffer` (a peer that ignores our window loses the excess).
//! - `ack_nr` is the last sequence number received in order; out-of-order packets are kept only
//!   within [`MAX_REORDER`] packets of it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::ledbat::Ledbat;
use super::packet::{Header, Packet, PacketType, HEADER_LEN, MAX_SACK_BYTES};
use crate::time::Instant;

/// Packets received ahead of a gap that are kept: more than a full receive window of full
/// packets (1 MiB is ~760), so that a sender using all of our window loses nothing but the
/// hole to one loss. The selective ACK names only the first 256 of them; the rest wait, and
/// are acknowledged with the hole. (Keeping only what the selective ACK can name threw the
/// rest away, and the sender, its window full of packets we had dropped, crept on one probe
/// per round trip: a Shoal → Shoal download over uTP stalled.) The byte bound of the receive
/// buffer applies too, so small packets cannot hold more than it either.
const MAX_REORDER: u16 = 2048;
/// Lower bound of the retransmission timeout (BEP 29's 500 ms).
const MIN_RTO: Duration = Duration::from_millis(500);
const MAX_RTO: Duration = Duration::from_secs(30);
/// The first timeout, before any round trip is measured.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Unanswered retransmissions of the SYN before the connection attempt fails.
const SYN_RESENDS: u32 = 2;
/// Consecutive timeouts of data before the connection is declared dead.
const DATA_RESENDS: u32 = 6;
/// An idle connection sends an empty ACK this often (keeps NAT mappings open).
const KEEPALIVE: Duration = Duration::from_secs(30);
/// A connection that hears nothing for this long is dead. Longer than the peer wire
/// protocol's own keepalive (2 minutes), as ACKs of our keepalives are never sent.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a cleanly closed connection still answers the peer's retransmissions (its last
/// ACK may have been lost), as TCP's TIME-WAIT does.
const LINGER: Duration = Duration::from_secs(5);
/// One packet in this many gets the invariants' full check (debug builds; see `check`).
#[cfg(debug_assertions)]
const FULL_CHECK_EVERY: u32 = 64;
/// Least wait before a tail-loss probe (see `Connection::probe_timeout`).
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(10);
/// Selective ACKs that must name packets after a hole before it counts as lost.
const DUPLICATE_THRESHOLD: usize = 3;

/// Sizes and limits of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtpConfig {
    /// Largest datagram sent (header included): 1400 passes any path; loopback could take
    /// more but libtorrent sends no more than an Ethernet frame either.
    pub packet_size: usize,
    /// Bytes received and not yet read, plus out-of-order ones; the window we advertise.
    pub recv_buffer: usize,
    /// Bytes written and not yet acknowledged.
    pub send_buffer: usize,
}

impl Default for UtpConfig {
    fn default() -> Self {
        UtpConfig { packet_size: 1400, recv_buffer: 1 << 20, send_buffer: 1 << 20 }
    }
}

impl UtpConfig {
    fn mss(&self) -> usize {
        self.packet_size.saturating_sub(HEADER_LEN).max(100)
    }
}

/// What a connection has seen and done, for logs and benchmarks: how a transfer went wrong
/// shows here first (a window that stayed shut, packets thrown away, retransmissions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Data and FIN packets received (duplicates included).
    pub data_in: u64,
    /// Of those, ones already received.
    pub duplicates_in: u64,
    /// Of those, ones kept ahead of a gap.
    pub reordered_in: u64,
    /// Of those, ones thrown away: no room in the receive buffer, or too far ahead.
    pub discarded_in: u64,
    /// Data and FIN packets sent for the first time.
    pub data_out: u64,
    /// Retransmissions.
    pub resent: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Tail-loss probes: a segment resent early, without shrinking the window.
    pub probes: u64,
    /// Losses found from duplicate or selective ACKs.
    pub fast_losses: u64,
    /// Acknowledgements sent on their own (not riding on data).
    pub acks_out: u64,
    /// Of those, ones that advertised a window smaller than one packet.
    pub zero_windows_out: u64,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and had it acknowledged, or we closed after the peer's FIN.
    Done,
    /// The peer reset the connection.
    Reset,
    /// The SYN went unanswered.
    ConnectTimeout,
    /// Retransmissions went unacknowledged, or nothing was heard for too long.
    TimedOut,
    /// We reset it ([`Connection::reset`]).
    Aborted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SynSent,
    /// Accepted; sends no data until the initiator shows it has our ACK of its SYN, since
    /// that ACK is how it learns where our data starts.
    SynReceived,
    Connected,
    Closed(CloseReason),
}

#[derive(Debug)]
struct Segment {
    seq: u16,
    kind: PacketType,
    payload: Bytes,
    sent_at: Instant,
    transmissions: u32,
    sacked: bool,
    need_resend: bool,
}

/// `a - b` in sequence space, as a signed distance.
fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

fn micros(now: Instant) -> u32 {
    // Wrapping on purpose: the peer only ever subtracts two of these.
    now.since_epoch().as_micros() as u32
}

pub struct Connection {
    config: UtpConfig,
    state: State,
    /// Connection id on packets we receive.
    recv_id: u16,
    /// Connection id on packets we send (except the SYN, which carries `recv_id`).
    send_id: u16,
    // ---- send side
    /// The next sequence number to give a packet.
    seq_nr: u16,
    unsent: BytesMut,
    in_flight: VecDeque<Segment>,
    in_flight_bytes: usize,
    to_resend: usize,
    /// The application will write no more: FIN once `unsent` is empty.
    closing: bool,
    fin_seq: Option<u16>,
    peer_wnd: usize,
    ledbat: Ledbat,
    srtt: Option<(f64, f64)>,
    rto: Duration,
    rto_deadline: Option<Instant>,
    /// When to send a tail-loss probe, if one is due before the retransmission timeout.
    probe_deadline: Option<Instant>,
    timeouts: u32,
    duplicate_acks: u32,
    last_ack: u16,
    /// A loss was answered (window halved); the next halving waits for ACKs past this.
    recovery_until: Option<u16>,
    // ---- receive side
    ack_nr: u16,
    reorder: HashMap<u16, Bytes>,
    reorder_bytes: usize,
    readable: VecDeque<Bytes>,
    readable_bytes: usize,
    /// The sequence number of the peer's FIN, once seen.
    eof_seq: Option<u16>,
    /// Everything up to the peer's FIN has arrived.
    eof: bool,
    /// Our packets' one-way delay as last measured here, echoed to the peer.
    reply_micro: u32,
    need_ack: bool,
    /// An accepted connection's first packet is the bare ACK of the SYN.
    ack_syn_first: bool,
    advertised: usize,
    last_recv: Instant,
    last_sent: Instant,
    /// Something the application waits for changed (data, room, state).
    wake: bool,
    closed_at: Option<Instant>,
    stats: ConnStats,
    /// Calls of `check` (debug builds).
    #[cfg(debug_assertions)]
    checks: u32,
}

impl Connection {
    fn new(
        config: UtpConfig,
        state: State,
        recv_id: u16,
        send_id: u16,
        seq_nr: u16,
        now: Instant,
    ) -> Self {
        let mss = config.mss();
        Connection {
            config,
            state,
            recv_id,
            send_id,
            seq_nr,
            unsent: BytesMut::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            to_resend: 0,
            closing: false,
            fin_seq: None,
            peer_wnd: mss,
            ledbat: Ledbat::new(mss, config.send_buffer),
            srtt: None,
            rto: INITIAL_RTO,
            rto_deadline: None,
            probe_deadline: None,
            timeouts: 0,
            duplicate_acks: 0,
            last_ack: seq_nr.wrapping_sub(1),
            recovery_until: None,
            ack_nr: 0,
            reorder: HashMap::new(),
            reorder_bytes: 0,
            readable: VecDeque::new(),
            readable_bytes: 0,
            eof_seq: None,
            eof: false,
            reply_micro: 0,
            need_ack: false,
            ack_syn_first: false,
            advertised: 0,
            last_recv: now,
            last_sent: now,
            wake: false,
            closed_at: None,
            stats: ConnStats::default(),
            #[cfg(debug_assertions)]
            checks: 0,
        }
    }

    /// Opens a connection: `recv_id` is ours to receive on (the peer sends with it), `seq_nr`
    /// the first sequence number (random, from the driver).
    pub fn connect(config: UtpConfig, recv_id: u16, seq_nr: u16, now: Instant) -> Self {
        let mut c =
            Connection::new(config, State::SynSent, recv_id, recv_id.wrapping_add(1), seq_nr, now);
        c.push_segment(PacketType::Syn, Bytes::new(), now);
        c
    }

    /// Answers a peer's SYN; `seq_nr` is our first sequence number (random).
    pub fn accept(config: UtpConfig, syn: &Header, seq_nr: u16, now: Instant) -> Self {
        let mut c = Connection::new(
            config,
            State::SynReceived,
            syn.connection_id.wrapping_add(1),
            syn.connection_id,
            seq_nr,
            now,
        );
        c.ack_nr = syn.seq_nr;
        c.peer_wnd = (syn.wnd_size as usize).min(config.send_buffer);
        c.reply_micro = micros(now).wrapping_sub(syn.timestamp);
        c.need_ack = true;
        c.ack_syn_first = true;
        c
    }

    /// The connection id packets for this connection carry when they come to us.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// Open for writes: connected, or accepted (writes wait in the buffer until the
    /// initiator's first packet).
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected | State::SynReceived)
    }

    /// Closed, and past lingering: the connection can be forgotten once its application side
    /// is gone.
    pub fn is_finished(&self, now: Instant) -> bool {
        match (self.state, self.closed_at) {
            (State::Closed(CloseReason::Done), Some(at)) => now.saturating_since(at) >= LINGER,
            (State::Closed(_), _) => true,
            _ => false,
        }
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Takes the "something changed for the application" flag.
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Round-trip time as measured, if any.
    pub fn rtt(&self) -> Option<Duration> {
        self.srtt.map(|(srtt, _)| Duration::from_secs_f64(srtt))
    }

    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    pub fn window(&self) -> usize {
        self.ledbat.window()
    }

    /// Payload bytes sent and not yet acknowledged.
    pub fn bytes_in_flight(&self) -> usize {
        self.in_flight_bytes
    }

    // ---- the application's side

    /// Queues bytes to send; returns how many fit in the send buffer (0: wait for a wake).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.closing || matches!(self.state, State::Closed(_)) {
            return 0;
        }
        let room = self.config.send_buffer.saturating_sub(self.unsent.len() + self.in_flight_bytes);
        let n = room.min(data.len());
        self.unsent.extend_from_slice(&data[..n]);
        n
    }

    /// Moves received bytes to `out`, up to `max`. `None` at the end of the stream (the peer's
    /// FIN, or the connection closed); `Some(0)` when nothing is there yet.
    pub fn read(&mut self, out: &mut BytesMut, max: usize) -> Option<usize> {
        self.read_with(max, |bytes| out.extend_from_slice(bytes))
    }

    /// As [`Self::read`], into a slice.
    pub fn read_slice(&mut self, out: &mut [u8]) -> Option<usize> {
        let mut at = 0;
        self.read_with(out.len(), |bytes| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        })
    }

    fn read_with(&mut self, max: usize, mut sink: impl FnMut(&[u8])) -> Option<usize> {
        let mut n = 0;
        while n < max {
            let Some(front) = self.readable.front_mut() else { break };
            let take = front.len().min(max - n);
            sink(&front[..take]);
            front.advance(take);
            if front.is_empty() {
                self.readable.pop_front();
            }
            n += take;
        }
        self.readable_bytes -= n;
        // A window that reopened by a quarter of the buffer is news to a sender that waits.
        if self.recv_room() >= self.advertised + self.config.recv_buffer / 4 {
            self.need_ack = true;
        }
        if n == 0 && (self.eof || matches!(self.state, State::Closed(_))) {
            return None;
        }
        Some(n)
    }

    /// Everything up to the peer's FIN has arrived.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Bytes waiting to be read.
    pub fn readable_bytes(&self) -> usize {
        self.readable_bytes
    }

    /// Room left in the send buffer.
    pub fn writable_bytes(&self) -> usize {
        if self.closing || matches!(self.state, State::Closed(_)) {
            return 0;
        }
        self.config.send_buffer.saturating_sub(self.unsent.len() + self.in_flight_bytes)
    }

    /// No more writes: a FIN follows what is queued.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Tears the connection down now; a RESET goes out with the next transmit.
    pub fn reset(&mut self) {
        if !matches!(self.state, State::Closed(_)) {
            self.state = State::Closed(CloseReason::Aborted);
            self.rto_deadline = None;
            self.probe_deadline = None;
            self.need_ack = true; // the reset is sent in its place
            self.wake = true;
        }
    }

    // ---- the network's side

    /// Takes a packet addressed to this connection.
    pub fn handle(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        if let State::Closed(reason) = self.state {
            // Done, the peer may not have our last ACK: answer its retransmissions while we
            // linger (see `LINGER`).
            if reason == CloseReason::Done && matches!(h.kind, PacketType::Data | PacketType::Fin) {
                self.need_ack = true;
            }
            return;
        }
        if h.kind == PacketType::Reset {
            self.finish(CloseReason::Reset, now);
            return;
        }
        self.last_recv = now;
        self.reply_micro = micros(now).wrapping_sub(h.timestamp);
        self.peer_wnd = (h.wnd_size as usize).min(self.config.send_buffer);
        if self.state == State::SynSent {
            // Only the ACK of our SYN tells the number the peer's data starts at.
            let syn_acked = self.in_flight.front().map(|s| s.seq) == Some(h.ack_nr);
            if !syn_acked || h.kind != PacketType::State {
                return;
            }
            self.state = State::Connected;
            // The peer's first data packet carries the number its ACK of our SYN did.
            self.ack_nr = h.seq_nr.wrapping_sub(1);
            self.wake = true;
        }
        if self.state == State::SynReceived && h.kind != PacketType::Syn {
            // The initiator heard our ACK of its SYN (it sends nothing else before): our data
            // may start at the number that ACK carried.
            self.state = State::Connected;
            self.wake = true;
        }
        self.on_ack(now, h, packet.selective_ack);
        match h.kind {
            PacketType::Data => self.receive(h.seq_nr, Bytes::copy_from_slice(packet.payload)),
            PacketType::Fin => {
                if self.eof_seq.is_none() {
                    self.eof_seq = Some(h.seq_nr);
                }
                self.receive(h.seq_nr, Bytes::new());
            }
            // A repeated SYN: our ACK of it was lost.
            PacketType::Syn => self.need_ack = true,
            PacketType::State | PacketType::Reset => {}
        }
        self.check_done(now);
        self.check();
    }

    fn receive(&mut self, seq: u16, payload: Bytes) {
        self.need_ack = true;
        self.stats.data_in += 1;
        let ahead = seq_diff(seq, self.ack_nr.wrapping_add(1));
        if ahead < 0 {
            self.stats.duplicates_in += 1;
            return; // a duplicate: the ACK tells the peer again
        }
        if ahead == 0 {
            self.deliver(seq, payload);
            while let Some(next) = self.reorder.remove(&self.ack_nr.wrapping_add(1)) {
                self.reorder_bytes -= next.len();
                self.deliver(self.ack_nr.wrapping_add(1), next);
            }
            return;
        }
        let fits =
            self.readable_bytes + self.reorder_bytes + payload.len() <= self.config.recv_buffer;
        if self.reorder.contains_key(&seq) {
            self.stats.duplicates_in += 1;
        } else if ahead as u16 <= MAX_REORDER && fits {
            self.stats.reordered_in += 1;
            self.reorder_bytes += payload.len();
            self.reorder.insert(seq, payload);
        } else {
            self.stats.discarded_in += 1;
        }
    }

    fn deliver(&mut self, seq: u16, payload: Bytes) {
        if self.readable_bytes + payload.len() > self.config.recv_buffer {
            // The peer ignored our window; it resends once we ACK less.
            self.stats.discarded_in += 1;
            return;
        }
        self.ack_nr = seq;
        if !payload.is_empty() {
            self.readable_bytes += payload.len();
            self.readable.push_back(payload);
            self.wake = true;
        }
        if self.eof_seq == Some(seq) {
            self.eof = true;
            self.wake = true;
        }
    }

    fn on_ack(&mut self, now: Instant, h: &Header, sack: Option<&[u8]>) {
        // An ACK of something never sent is a confused or hostile peer: ignore it.
        if seq_diff(h.ack_nr, self.seq_nr.wrapping_sub(1)) > 0 {
            return;
        }
        let window_full = self.in_flight_bytes + self.config.mss() >= self.ledbat.window();
        let mut acked = 0;
        let mut rtt_sample = None;
        while let Some(front) = self.in_flight.front() {
            if seq_diff(h.ack_nr, front.seq) < 0 {
                break;
            }
            let seg = self.in_flight.pop_front().unwrap_or_else(|| unreachable!("front exists"));
            self.in_flight_bytes -= seg.payload.len();
            if seg.need_resend {
                self.to_resend -= 1;
            }
            if !seg.sacked {
                acked += seg.payload.len().max(1);
            }
            if seg.transmissions == 1 {
                rtt_sample = Some(now.saturating_since(seg.sent_at));
            }
            if Some(seg.seq) == self.fin_seq {
                self.wake = true;
            }
        }
        if let Some(mask) = sack {
            acked += self.apply_sack(h.ack_nr, mask, now, &mut rtt_sample);
        }
        if acked > 0 {
            self.timeouts = 0;
            self.duplicate_acks = 0;
            self.wake = true;
            self.ledbat.on_ack(acked, h.timestamp_difference, window_full, now);
            if let Some(sample) = rtt_sample {
                self.update_rtt(sample);
            }
            self.arm_timers(now);
        } else if h.kind == PacketType::State
            && h.ack_nr == self.last_ack
            && !self.in_flight.is_empty()
        {
            self.duplicate_acks += 1;
            if self.duplicate_acks == DUPLICATE_THRESHOLD as u32 {
                self.lost(0);
            }
        }
        self.last_ack = h.ack_nr;
        if let Some(until) = self.recovery_until {
            if seq_diff(h.ack_nr, until) >= 0 {
                self.recovery_until = None;
            }
        }
    }

    /// Marks what a selective ACK names; a segment with enough acknowledged ones after it is
    /// lost. Returns the payload bytes newly acknowledged.
    fn apply_sack(
        &mut self,
        ack_nr: u16,
        mask: &[u8],
        now: Instant,
        rtt: &mut Option<Duration>,
    ) -> usize {
        let Some(first) = self.in_flight.front().map(|s| s.seq) else { return 0 };
        let mut acked = 0;
        let mut highest = 0;
        for (byte_index, byte) in mask.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let seq = ack_nr.wrapping_add(2 + (byte_index * 8 + bit) as u16);
                let index = seq.wrapping_sub(first) as usize;
                if let Some(seg) = self.in_flight.get_mut(index) {
                    if !seg.sacked {
                        seg.sacked = true;
                        if std::mem::take(&mut seg.need_resend) {
                            self.to_resend -= 1;
                        }
                        highest = highest.max(index);
                        acked += seg.payload.len().max(1);
                        if seg.transmissions == 1 {
                            *rtt = Some(now.saturating_since(seg.sent_at));
                        }
                    }
                }
            }
        }
        // Holes with DUPLICATE_THRESHOLD acknowledged segments after them are lost (nothing
        // past the last one this ACK named has any after it).
        let mut after = 0;
        let mut lost = Vec::new();
        for (index, seg) in self.in_flight.range(..=highest).enumerate().rev() {
            if seg.sacked {
                after += 1;
            } else if after >= DUPLICATE_THRESHOLD && seg.transmissions == 1 && !seg.need_resend {
                lost.push(index);
            }
        }
        for index in lost {
            self.lost(index);
        }
        acked
    }

    /// The segment at `index` of the flight is lost: resend it, and shrink the window once
    /// per round of losses.
    fn lost(&mut self, index: usize) {
        let Some(seg) = self.in_flight.get_mut(index) else { return };
        if seg.sacked || seg.need_resend {
            return;
        }
        seg.need_resend = true;
        self.to_resend += 1;
        self.stats.fast_losses += 1;
        if self.recovery_until.is_none() {
            self.ledbat.on_loss();
            self.recovery_until = Some(self.seq_nr.wrapping_sub(1));
        }
    }

    fn update_rtt(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        let (srtt, var) = match self.srtt {
            None => (s, s / 2.0),
            Some((srtt, var)) => (0.875 * srtt + 0.125 * s, 0.75 * var + 0.25 * (srtt - s).abs()),
        };
        self.srtt = Some((srtt, var));
        self.rto = Duration::from_secs_f64(srtt + 4.0 * var).clamp(MIN_RTO, MAX_RTO);
    }

    /// When [`Self::handle_timeout`] wants calling.
    pub fn timeout(&self) -> Option<Instant> {
        if matches!(self.state, State::Closed(_)) {
            return None;
        }
        let idle = self.last_recv + IDLE_TIMEOUT;
        let keepalive = (self.state != State::SynSent).then_some(self.last_sent + KEEPALIVE);
        [self.rto_deadline, self.probe_deadline, Some(idle), keepalive].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        if now.saturating_since(self.last_recv) >= IDLE_TIMEOUT {
            self.finish(CloseReason::TimedOut, now);
            return;
        }
        if self.state != State::SynSent && now.saturating_since(self.last_sent) >= KEEPALIVE {
            self.need_ack = true;
        }
        let Some(deadline) = self.rto_deadline else { return };
        if now < deadline {
            if self.probe_deadline.is_some_and(|at| at <= now) {
                self.probe_deadline = None;
                if let Some(seg) = self.in_flight.iter_mut().find(|s| !s.sacked && !s.need_resend) {
                    seg.need_resend = true;
                    self.to_resend += 1;
                    self.stats.probes += 1;
                }
            }
            return;
        }
        self.probe_deadline = None;
        self.timeouts += 1;
        let limit = if self.state == State::SynSent { SYN_RESENDS } else { DATA_RESENDS };
        if self.timeouts > limit {
            let reason = if self.state == State::SynSent {
                CloseReason::ConnectTimeout
            } else {
                CloseReason::TimedOut
            };
            self.finish(reason, now);
            return;
        }
        self.stats.timeouts += 1;
        self.ledbat.on_timeout();
        self.rto = (self.rto * 2).min(MAX_RTO);
        if let Some(seg) = self.in_flight.iter_mut().find(|s| !s.sacked) {
            if !std::mem::replace(&mut seg.need_resend, true) {
                self.to_resend += 1;
            }
        }
        self.rto_deadline = Some(now + self.rto);
    }

    /// Restarts the retransmission timer (and the probe's) after the flight moved on.
    fn arm_timers(&mut self, now: Instant) {
        if self.in_flight.is_empty() {
            self.rto_deadline = None;
            self.probe_deadline = None;
        } else {
            self.rto_deadline = Some(now + self.rto);
            self.probe_deadline = self.probe_timeout().map(|pto| now + pto);
        }
    }

    /// How long a flight may go unacknowledged before its first segment is resent as a
    /// probe: twice the round trip. The retransmission timeout's floor (500 ms, BEP 29 and
    /// libtorrent) is hundreds of round trips on a short path; a lost request there would
    /// leave the connection idle that long, as the peer has nothing to send back that would
    /// reveal the loss (the tail-loss probe of RFC 8985). A probe does not shrink the window:
    /// only the timeout that follows an unanswered one does.
    fn probe_timeout(&self) -> Option<Duration> {
        let (srtt, _) = self.srtt?;
        let pto = Duration::from_secs_f64(2.0 * srtt).max(MIN_PROBE_TIMEOUT);
        (pto < self.rto).then_some(pto)
    }

    fn finish(&mut self, reason: CloseReason, now: Instant) {
        self.state = State::Closed(reason);
        self.closed_at = Some(now);
        self.rto_deadline = None;
        self.probe_deadline = None;
        self.wake = true;
    }

    /// Closed cleanly once our FIN is acknowledged and the peer's has arrived.
    fn check_done(&mut self, now: Instant) {
        let fin_acked = self.fin_seq.is_some() && self.in_flight.is_empty();
        if fin_acked && self.eof {
            self.finish(CloseReason::Done, now);
        }
    }

    fn recv_room(&self) -> usize {
        self.config.recv_buffer.saturating_sub(self.readable_bytes + self.reorder_bytes)
    }

    /// Adds a segment to the flight, marked for sending.
    fn push_segment(&mut self, kind: PacketType, payload: Bytes, now: Instant) {
        self.in_flight_bytes += payload.len();
        self.to_resend += 1;
        self.in_flight.push_back(Segment {
            seq: self.seq_nr,
            kind,
            payload,
            sent_at: now,
            transmissions: 0,
            sacked: false,
            need_resend: true,
        });
        self.seq_nr = self.seq_nr.wrapping_add(1);
        if self.rto_deadline.is_none() {
            self.arm_timers(now);
        }
    }

    /// Writes the next datagram to send into `out` (cleared first); `false` when there is
    /// nothing to send now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let State::Closed(reason) = self.state {
            // One RESET for a connection we aborted; the last ACKs of a clean close; then
            // silence.
            if !std::mem::take(&mut self.need_ack) {
                return false;
            }
            match reason {
                CloseReason::Aborted => {
                    self.encode(PacketType::Reset, self.seq_nr, None, &[], now, out)
                }
                CloseReason::Done => {
                    self.encode(PacketType::State, self.seq_nr, None, &[], now, out)
                }
                _ => return false,
            }
            return true;
        }
        // Retransmissions first.
        if self.to_resend > 0 {
            if let Some(index) = self.in_flight.iter().position(|s| s.need_resend) {
                self.send_segment(index, now, out);
                return true;
            }
        }
        // An accepted connection acknowledges the SYN on its own first, as peers expect.
        if std::mem::take(&mut self.ack_syn_first) {
            self.encode(PacketType::State, self.seq_nr, None, &[], now, out);
            return true;
        }
        if self.state == State::Connected {
            if let Some(payload) = self.next_payload() {
                self.push_segment(PacketType::Data, payload, now);
                self.send_segment(self.in_flight.len() - 1, now, out);
                return true;
            }
            if self.closing && self.unsent.is_empty() && self.fin_seq.is_none() {
                self.fin_seq = Some(self.seq_nr);
                self.push_segment(PacketType::Fin, Bytes::new(), now);
                self.send_segment(self.in_flight.len() - 1, now, out);
                return true;
            }
        }
        if self.need_ack && self.state != State::SynSent {
            let mask = self.sack_mask();
            self.encode(PacketType::State, self.seq_nr, mask.as_deref(), &[], now, out);
            return true;
        }
        false
    }

    /// Sends (or resends) the flight's segment at `index`, marked `need_resend`.
    fn send_segment(&mut self, index: usize, now: Instant, out: &mut Vec<u8>) {
        let seg = &mut self.in_flight[index];
        debug_assert!(seg.need_resend);
        seg.need_resend = false;
        self.to_resend -= 1;
        seg.transmissions += 1;
        seg.sent_at = now;
        if seg.transmissions > 1 {
            self.stats.resent += 1;
        } else if matches!(seg.kind, PacketType::Data | PacketType::Fin) {
            self.stats.data_out += 1;
        }
        let (kind, seq, payload) = (seg.kind, seg.seq, seg.payload.clone());
        self.encode(kind, seq, None, &payload, now, out);
    }

    /// The next data packet's payload, if the windows allow one: ours (LEDBAT) and the
    /// peer's receive window. Small writes wait while data is in flight (Nagle), so a stream
    /// of small messages goes out in full packets.
    fn next_payload(&mut self) -> Option<Bytes> {
        let mss = self.config.mss();
        if self.unsent.is_empty() {
            return None;
        }
        let window = self.ledbat.window().min(self.peer_wnd.max(mss));
        if self.in_flight_bytes + mss > window && !self.in_flight.is_empty() {
            return None;
        }
        if self.unsent.len() < mss && !self.in_flight.is_empty() && !self.closing {
            return None;
        }
        let n = self.unsent.len().min(mss);
        Some(self.unsent.split_to(n).freeze())
    }

    fn sack_mask(&self) -> Option<Vec<u8>> {
        if self.reorder.is_empty() {
            return None;
        }
        let base = self.ack_nr.wrapping_add(2);
        let furthest = self.reorder.keys().map(|&s| s.wrapping_sub(base) as usize).max()?;
        let bytes = (furthest / 8 + 1).div_ceil(4) * 4;
        let mut mask = vec![0u8; bytes.min(MAX_SACK_BYTES)];
        for &seq in self.reorder.keys() {
            let bit = seq.wrapping_sub(base) as usize;
            if let Some(byte) = mask.get_mut(bit / 8) {
                *byte |= 1 << (bit % 8);
            }
        }
        Some(mask)
    }

    fn encode(
        &mut self,
        kind: PacketType,
        seq_nr: u16,
        sack: Option<&[u8]>,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let wnd = self.recv_room();
        let header = Header {
            kind,
            connection_id: if kind == PacketType::Syn { self.recv_id } else { self.send_id },
            timestamp: micros(now),
            timestamp_difference: self.reply_micro,
            wnd_size: u32::try_from(wnd).unwrap_or(u32::MAX),
            seq_nr,
            ack_nr: self.ack_nr,
        };
        header.encode(sack, payload, out);
        if kind == PacketType::State {
            self.stats.acks_out += 1;
            if wnd < self.config.mss() {
                self.stats.zero_windows_out += 1;
            }
        }
        self.advertised = wnd;
        self.last_sent = now;
        // A data packet carries our ACK too, unless a selective ACK has news to add.
        if kind == PacketType::State || self.reorder.is_empty() {
            self.need_ack = false;
        }
    }

    /// Checks the invariants (module documentation) in debug builds: the cheap ones on every
    /// packet, the walks of the flight and the reorder buffer on one packet in
    /// [`FULL_CHECK_EVERY`] (every packet, they made the receive path quadratic in the window).
    #[cfg(debug_assertions)]
    fn check(&mut self) {
        if let (Some(first), Some(last)) = (self.in_flight.front(), self.in_flight.back()) {
            debug_assert_eq!(first.seq.wrapping_add(self.in_flight.len() as u16), self.seq_nr);
            debug_assert_eq!(last.seq.wrapping_add(1), self.seq_nr);
        }
        debug_assert!(self.to_resend <= self.in_flight.len());
        debug_assert!(self.readable_bytes + self.reorder_bytes <= self.config.recv_buffer);
        self.checks += 1;
        if !self.checks.is_multiple_of(FULL_CHECK_EVERY) {
            return;
        }
        if let Some(first) = self.in_flight.front() {
            for (i, seg) in self.in_flight.iter().enumerate() {
                debug_assert_eq!(
                    seg.seq,
                    first.seq.wrapping_add(i as u16),
                    "flight not contiguous"
                );
            }
        }
        debug_assert_eq!(
            self.in_flight_bytes,
            self.in_flight.iter().map(|s| s.payload.len()).sum::<usize>()
        );
        debug_assert_eq!(self.to_resend, self.in_flight.iter().filter(|s| s.need_resend).count());
        debug_assert!(self.reorder.keys().all(|&s| {
            let ahead = seq_diff(s, self.ack_nr);
            ahead > 1 && ahead as u16 <= MAX_REORDER + 1
        }));
    }

    #[cfg(not(debug_assertions))]
    fn check(&mut self) {}
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("recv_id", &self.recv_id)
            .field("seq_nr", &self.seq_nr)
            .field("ack_nr", &self.ack_nr)
            .field("in_flight", &self.in_flight.len())
            .field("cwnd", &self.ledbat.window())
            .field("peer_wnd", &self.peer_wnd)
            .field("in_flight_bytes", &self.in_flight_bytes)
            .field("unsent", &self.unsent.len())
            .field("timeouts", &self.timeouts)
            .field("rto", &self.rto)
            .field("readable", &self.readable_bytes)
            .field("reorder", &self.reorder.len())
            .field(
                "first",
                &self.in_flight.front().map(|s| (s.seq, s.transmissions, s.sacked, s.need_resend)),
            )
            .finish()
    }
}
