//! A media player reading the torrent at a bitrate, the way a browser's `<video>` does.
//!
//! Two positions matter. The *playback* position advances at the bitrate while playing. The
//! *read* position is where the player's next read waits: it reads verified data ahead of
//! playback, as a media element's demuxer fills its buffer, up to `buffer_ahead` of media
//! beyond playback. The read position is what the core is told (a [`ReaderWindow`] at the
//! start, whenever it enters a new piece, after a seek; removed at the end), as a driver's
//! reader reports its reads.
//!
//! Before the first frame the player waits until `startup` of media is read; playback reaching
//! the read position is a stall, which lasts until `resume` of media is read again. A seek
//! jumps both positions and waits for the startup buffer again; that wait is a seek's, not a
//! stall (players report them apart, and so do we).
//!
//! The model has no clock and no simulation in it: [`Player::advance`] brings it to a given
//! time from what is verified and says when it next needs a look (playback's next piece
//! boundary), and [`Player::waits_for`] says which verified piece would move its read
//! position, so the simulation wakes it through its event queue, never by polling.

use std::time::Duration;

use shoal_proto::streaming::{self, ReaderWindow};
use shoal_proto::Instant;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// How a player plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerConfig {
    /// Media bytes consumed per second of playback.
    pub bitrate: u64,
    /// First torrent offset it plays.
    pub start: u64,
    /// Offset it stops at (exclusive); `None`: the end of the torrent.
    pub end: Option<u64>,
    /// Media read before the first frame, and after a seek.
    pub startup: Duration,
    /// Media read before playback resumes after a stall.
    pub resume: Duration,
    /// Media the player reads ahead of playback at most (its forward buffer).
    pub buffer_ahead: Duration,
    /// Caps the read-ahead the core is told (a bounded store's share of its budget).
    pub max_readahead: Option<u64>,
}

impl PlayerConfig {
    /// Plays the whole torrent at `bitrate` bytes per second, with a 2 s startup buffer, a
    /// 1 s resume buffer and 10 s read ahead of playback.
    pub fn new(bitrate: u64) -> Self {
        PlayerConfig {
            bitrate,
            start: 0,
            end: None,
            startup: Duration::from_secs(2),
            resume: Duration::from_secs(1),
            buffer_ahead: Duration::from_secs(10),
            max_readahead: None,
        }
    }

    /// Plays torrent offsets `start..end` only.
    pub fn range(mut self, start: u64, end: u64) -> Self {
        self.start = start;
        self.end = Some(end);
        self
    }

    pub fn startup(mut self, media: Duration) -> Self {
        self.startup = media;
        self
    }

    pub fn resume(mut self, media: Duration) -> Self {
        self.resume = media;
        self
    }

    pub fn buffer_ahead(mut self, media: Duration) -> Self {
        self.buffer_ahead = media;
        self
    }

    pub fn max_readahead(mut self, bytes: u64) -> Self {
        self.max_readahead = Some(bytes);
        self
    }
}

/// Why a player is waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// For the startup buffer: no frame shown yet.
    Start,
    /// For the buffer after a seek.
    Seek,
    /// For the resume buffer: playback caught up with what was read.
    Stall,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerState {
    Waiting {
        reason: Wait,
        since: Instant,
    },
    /// Playing from `from` since `since`; it reaches `until` (playback's next piece boundary,
    /// or the end) at `at`, and looks again then.
    Playing {
        since: Instant,
        from: u64,
        until: u64,
        at: Instant,
    },
    /// Reached the end of its range.
    Finished,
}

/// What a player went through, as a player's metrics would report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// When play was asked.
    pub asked_at: Instant,
    /// Time to first frame: from `asked_at` to the startup buffer being read.
    pub first_frame: Option<Duration>,
    /// Times playback caught up with the data (a stall that ended in the instant it began,
    /// because the piece was verified then, is none).
    pub stalls: u32,
    /// Total time spent stalled (a stall a seek ended counts up to the seek).
    pub stalled: Duration,
    /// Seeks asked for (including ones before the first frame).
    pub seeks: u32,
    /// How long each seek after the first frame waited for its buffer, in order; seeks
    /// superseded before their buffer was read are not here but in `seeks_abandoned`.
    pub seek_waits: Vec<Duration>,
    pub seeks_abandoned: u32,
    /// Torrent offset of the next byte to play (as of the player's last look).
    pub position: u64,
    /// Torrent offset its next read waits at: everything from `position` up to it is verified.
    pub read_position: u64,
    /// When it reached the end of its range (cleared by a seek back).
    pub finished: Option<Instant>,
    /// Windows handed to the core (`set_reader` calls).
    pub reader_updates: u32,
}

/// What the core should be told about the player's reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderUpdate {
    Set(ReaderWindow),
    Remove,
}

pub struct Player {
    config: PlayerConfig,
    /// Resolved end of the range.
    end: u64,
    piece_length: u64,
    state: PlayerState,
    stats: PlayerStats,
    /// When and where the read-ahead's rate measurement started (play or the last seek), as
    /// the native `FileStream` measures what its consumer read.
    measured_since: (Instant, u64),
    /// The window the core has, if any.
    reported: Option<ReaderWindow>,
    /// A seek moved the reader: report it even within the same piece.
    moved: bool,
    /// Playback's next look the simulation has scheduled (an earlier one is skipped).
    pub(crate) wake: Option<Instant>,
    /// The simulation has scheduled a look for a verified piece, later in this instant.
    pub(crate) check_pending: bool,
}

impl Player {
    /// A player asked to play at `now`, of a torrent with these pieces.
    pub fn new(config: PlayerConfig, piece_length: u32, total_length: u64, now: Instant) -> Self {
        let end = config.end.unwrap_or(total_length).min(total_length);
        let start = config.start.min(end);
        Player {
            end,
            piece_length: u64::from(piece_length).max(1),
            state: PlayerState::Waiting { reason: Wait::Start, since: now },
            stats: PlayerStats {
                asked_at: now,
                position: start,
                read_position: start,
                ..PlayerStats::default()
            },
            measured_since: (now, start),
            reported: None,
            moved: true,
            wake: None,
            check_pending: false,
            config: PlayerConfig { bitrate: config.bitrate.max(1), ..config },
        }
    }

    pub fn config(&self) -> &PlayerConfig {
        &self.config
    }

    pub fn stats(&self) -> &PlayerStats {
        &self.stats
    }

    pub fn state(&self) -> PlayerState {
        self.state
    }

    /// Brings the player to `now`, given which pieces are verified. Returns when playback next
    /// needs a look whatever happens (its next piece boundary, the end); `None` when only a
    /// verified piece can move it (see [`Player::waits_for`]) or it finished.
    pub fn advance(&mut self, now: Instant, have: impl Fn(u32) -> bool) -> Option<Instant> {
        loop {
            match self.state {
                PlayerState::Finished => return None,
                PlayerState::Waiting { reason, since } => {
                    self.read(&have);
                    if self.stats.read_position < self.buffer_end(reason) {
                        return None;
                    }
                    match reason {
                        Wait::Start => self.stats.first_frame = Some(now - self.stats.asked_at),
                        Wait::Seek => self.stats.seek_waits.push(now - since),
                        Wait::Stall => self.end_stall(now, since),
                    }
                    let pos = self.stats.position;
                    self.state =
                        PlayerState::Playing { since: now, from: pos, until: pos, at: now };
                }
                PlayerState::Playing { since, from, until, at } => {
                    let pos = from.saturating_add(bytes_in(self.config.bitrate, now - since));
                    self.stats.position = pos.min(until);
                    self.read(&have);
                    if now < at {
                        // Looked at early (for a verified piece): playback goes on as planned.
                        return Some(at);
                    }
                    let pos = until;
                    if pos >= self.end {
                        self.state = PlayerState::Finished;
                        self.stats.finished = Some(now);
                        return None;
                    }
                    if self.stats.read_position <= pos {
                        self.stats.stalls += 1;
                        self.state = PlayerState::Waiting { reason: Wait::Stall, since: now };
                        continue;
                    }
                    // What was read ends at a piece boundary, so it covers this whole piece.
                    let next = ((pos / self.piece_length + 1) * self.piece_length).min(self.end);
                    let at = now + self.time_for(next - pos);
                    self.state = PlayerState::Playing { since: now, from: pos, until: next, at };
                    return Some(at);
                }
            }
        }
    }

    /// Jumps to `offset` (clamped to the range) and buffers there.
    pub fn seek(&mut self, now: Instant, offset: u64) {
        let offset = offset.clamp(self.config.start.min(self.end), self.end);
        match self.state {
            PlayerState::Waiting { reason: Wait::Stall, since } => self.end_stall(now, since),
            PlayerState::Waiting { reason: Wait::Seek, .. } => self.stats.seeks_abandoned += 1,
            PlayerState::Waiting { reason: Wait::Start, .. }
            | PlayerState::Playing { .. }
            | PlayerState::Finished => {}
        }
        let reason = if self.stats.first_frame.is_none() { Wait::Start } else { Wait::Seek };
        self.stats.seeks += 1;
        self.stats.position = offset;
        self.stats.read_position = offset;
        self.stats.finished = None;
        self.state = PlayerState::Waiting { reason, since: now };
        self.measured_since = (now, offset);
        self.moved = true;
    }

    /// Whether `piece` being verified would move the read position.
    pub fn waits_for(&self, piece: u32) -> bool {
        let read = self.stats.read_position;
        self.state != PlayerState::Finished
            && read < self.read_limit()
            && self.piece_of(read) == piece
    }

    /// The change to tell the core about, if the read position entered another piece, was
    /// moved by a seek, or playback finished.
    pub fn reader_update(&mut self, now: Instant) -> Option<ReaderUpdate> {
        if self.state == PlayerState::Finished {
            return self.reported.take().map(|_| ReaderUpdate::Remove);
        }
        let position = self.stats.read_position;
        let same_piece =
            self.reported.is_some_and(|r| self.piece_of(r.position) == self.piece_of(position));
        if same_piece && !self.moved {
            return None;
        }
        let (since, from) = self.measured_since;
        let readahead = streaming::readahead(position.saturating_sub(from), now - since);
        let readahead = self.config.max_readahead.map_or(readahead, |cap| readahead.min(cap));
        let window = ReaderWindow { position, end: self.end, readahead };
        self.moved = false;
        self.reported = Some(window);
        self.stats.reader_updates += 1;
        Some(ReaderUpdate::Set(window))
    }

    /// Moves the read position over verified pieces, up to the forward buffer.
    fn read(&mut self, have: impl Fn(u32) -> bool) {
        let limit = self.read_limit();
        let mut read = self.stats.read_position;
        while read < limit && have(self.piece_of(read)) {
            read = ((read / self.piece_length + 1) * self.piece_length).min(self.end);
        }
        self.stats.read_position = read;
    }

    /// How far ahead of playback the player reads: its forward buffer, which always holds
    /// the buffers it waits for.
    fn read_limit(&self) -> u64 {
        let config = &self.config;
        let media = config.buffer_ahead.max(config.startup).max(config.resume);
        self.offset_after(media)
    }

    /// Where the read position must be for a wait for `reason` to end.
    fn buffer_end(&self, reason: Wait) -> u64 {
        let media = if reason == Wait::Stall { self.config.resume } else { self.config.startup };
        self.offset_after(media)
    }

    /// Offset `media` of playback after the playback position (at least a byte), within range.
    fn offset_after(&self, media: Duration) -> u64 {
        let bytes = bytes_in(self.config.bitrate, media).max(1);
        self.stats.position.saturating_add(bytes).min(self.end)
    }

    /// A stall that ended in the instant it began was none: the piece was verified then, and
    /// only the order of events within the instant made playback look first.
    fn end_stall(&mut self, now: Instant, since: Instant) {
        if now == since {
            self.stats.stalls -= 1;
        }
        self.stats.stalled += now - since;
    }

    fn piece_of(&self, offset: u64) -> u32 {
        (offset / self.piece_length) as u32
    }

    /// Playback time for `bytes`, rounded up so the position has reached them by then.
    fn time_for(&self, bytes: u64) -> Duration {
        let bitrate = u128::from(self.config.bitrate);
        let nanos = (u128::from(bytes) * NANOS_PER_SEC).div_ceil(bitrate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Bytes played in `time` at `bitrate`.
fn bytes_in(bitrate: u64, time: Duration) -> u64 {
    let bytes = u128::from(bitrate) * time.as_nanos() / NANOS_PER_SEC;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: u32 = 64 * 1024;
    const P: u64 = PIECE as u64;

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    /// 10 pieces, played at one piece per second with a one-piece startup buffer, a half-piece
    /// resume buffer and three pieces read ahead.
    fn player() -> Player {
        let config = PlayerConfig::new(P)
            .startup(Duration::from_secs(1))
            .resume(Duration::from_millis(500))
            .buffer_ahead(Duration::from_secs(3));
        Player::new(config, PIECE, 10 * P, at(0))
    }

    #[test]
    fn waits_for_the_startup_buffer_then_wakes_at_each_piece_boundary() {
        let mut p = player();
        assert_eq!(p.advance(at(0), |_| false), None);
        assert!(p.waits_for(0) && !p.waits_for(1));
        assert_eq!(p.advance(at(300), |piece| piece < 2), Some(at(1300)));
        assert_eq!(p.stats().first_frame, Some(Duration::from_millis(300)));
        assert_eq!(p.stats().read_position, 2 * P);
        assert!(p.waits_for(2));
        assert_eq!(p.advance(at(1300), |piece| piece < 2), Some(at(2300)));
        assert_eq!(p.stats().position, P);
    }

    #[test]
    fn reads_no_further_ahead_than_its_buffer() {
        let mut p = player();
        p.advance(at(0), |_| true);
        assert_eq!(p.stats().read_position, 3 * P);
        assert!(!p.waits_for(3), "the buffer is full");
        p.advance(at(1000), |_| true);
        assert_eq!(p.stats().read_position, 4 * P);
    }

    #[test]
    fn catching_up_with_the_reads_is_a_stall_until_the_resume_buffer_arrives() {
        let mut p = player();
        p.advance(at(0), |piece| piece == 0);
        assert_eq!(p.advance(at(1000), |piece| piece == 0), None);
        assert_eq!(p.stats().stalls, 1);
        assert!(p.waits_for(1));
        assert_eq!(p.advance(at(1250), |piece| piece < 2), Some(at(2250)));
        assert_eq!(p.stats().stalled, Duration::from_millis(250));
        assert_eq!(p.stats().stalls, 1);
    }

    #[test]
    fn a_stall_resolved_in_the_same_instant_is_none() {
        let mut p = player();
        p.advance(at(0), |piece| piece == 0);
        p.advance(at(1000), |piece| piece == 0);
        p.advance(at(1000), |piece| piece < 2);
        assert_eq!((p.stats().stalls, p.stats().stalled), (0, Duration::ZERO));
    }

    #[test]
    fn seeks_wait_apart_from_stalls_and_superseded_ones_are_abandoned() {
        let mut p = player();
        p.advance(at(0), |piece| piece == 0);
        p.seek(at(100), 5 * P);
        p.advance(at(100), |piece| piece == 0);
        p.seek(at(200), 7 * P);
        p.advance(at(200), |piece| piece == 0);
        p.advance(at(700), |_| true);
        let s = p.stats();
        assert_eq!((s.seeks, s.seeks_abandoned), (2, 1));
        assert_eq!(s.seek_waits, vec![Duration::from_millis(500)]);
        assert_eq!((s.stalls, s.stalled), (0, Duration::ZERO));
    }

    #[test]
    fn reports_the_read_position_per_piece_and_removes_it_at_the_end() {
        let mut p = player();
        let mut updates = Vec::new();
        let mut now = at(0);
        loop {
            let next = p.advance(now, |_| true);
            updates.extend(p.reader_update(now));
            match next {
                Some(at) => now = at,
                None => break,
            }
        }
        assert_eq!(p.stats().finished, Some(at(10_000)));
        let pieces: Vec<u64> = updates
            .iter()
            .filter_map(|u| match u {
                ReaderUpdate::Set(w) => Some(w.position / P),
                ReaderUpdate::Remove => None,
            })
            .collect();
        assert_eq!(pieces, vec![3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(updates.last(), Some(&ReaderUpdate::Remove));
        assert_eq!(p.reader_update(now), None);
    }
}
