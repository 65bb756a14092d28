//! A small harness for the torrent's unit tests: a 4 MiB torrent, a core holding all or none
//! of it, and peers attached through incoming connections.

use bytes::Bytes;

use super::{Action, Torrent, TorrentConfig};
use crate::bitfield::Bitfield;
use crate::create::TorrentBuilder;
use crate::metainfo::Metainfo;
use crate::time::Instant;
use crate::types::{InfoHash, PeerId, PeerKey};
use crate::wire::{BlockRef, Handshake, Message};

pub const PIECE: u32 = 256 * 1024;
pub const PIECES: u32 = 16;

pub struct Harness {
    pub t: Torrent,
    info_hash: InfoHash,
    next_id: u8,
}

impl Harness {
    /// A core with `config` that has every piece (`seed`) or none.
    pub fn new(config: TorrentConfig, seed: bool) -> Harness {
        Harness::build(config, seed, false)
    }

    /// [`Harness::new`] for a private torrent (BEP 27).
    pub fn new_private(config: TorrentConfig, seed: bool) -> Harness {
        Harness::build(config, seed, true)
    }

    fn build(config: TorrentConfig, seed: bool, private: bool) -> Harness {
        let len = (PIECES * PIECE) as usize;
        let content: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut hasher = TorrentBuilder::single_file("f.bin", len as u64)
            .expect("a valid single file")
            .private(private)
            .piece_length(PIECE)
            .start()
            .expect("a valid piece length");
        hasher.update(&content).expect("content within the announced length");
        let meta = Metainfo::from_bytes(&hasher.finish().expect("complete content"))
            .expect("our own torrent parses");
        let info = Some(Bytes::from(meta.info_bytes.clone()));
        let mut t = Torrent::new(config, meta.info_hash, PeerId([1; 20]), info, 7)
            .expect("our own info dictionary parses");
        let have = match seed {
            true => Bitfield::full(PIECES),
            false => Bitfield::new(PIECES),
        };
        t.start(Instant::ZERO, &have);
        Harness { t, info_hash: meta.info_hash, next_id: 2 }
    }

    /// A peer connects to us holding `pieces` (all of them: a seed) and says it is interested.
    pub fn peer(&mut self, now: Instant, pieces: &[u32]) -> PeerKey {
        let remote = Handshake::new(self.info_hash, PeerId([self.next_id; 20]));
        self.next_id += 1;
        let key = self
            .t
            .on_incoming(now, None, crate::types::PeerSource::WebRtc, &remote)
            .expect("room for the peer");
        let mut has = Bitfield::new(PIECES);
        for &p in pieces {
            has.set(p);
        }
        let message = match has.is_full() {
            true => Message::HaveAll,
            false => Message::Bitfield(Bytes::from(has.as_bytes().to_vec())),
        };
        self.t.on_message(now, key, message);
        self.t.on_message(now, key, Message::Interested);
        key
    }

    /// A peer at `addr` connects to us over TCP and says, in its extended handshake, that it
    /// speaks `ut_pex` and accepts connections on `listen_port`.
    pub fn peer_at(
        &mut self,
        now: Instant,
        addr: std::net::SocketAddr,
        listen_port: u16,
    ) -> PeerKey {
        let remote = Handshake::new(self.info_hash, PeerId([self.next_id; 20]));
        self.next_id += 1;
        let key = self
            .t
            .on_incoming(now, Some(addr), crate::types::PeerSource::Incoming, &remote)
            .expect("room for the peer");
        let hs = crate::extension::ExtendedHandshake::ours(None, "test", Some(listen_port));
        self.t.on_message(now, key, Message::Extended { id: 0, payload: hs.encode() });
        key
    }

    /// Everything the core wants done, in order.
    pub fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.t.poll_action()).collect()
    }

    /// The blocks the core asked to read from storage (draining every action).
    pub fn reads(&mut self) -> Vec<BlockRef> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::ReadBlock { block, .. } => Some(block),
                _ => None,
            })
            .collect()
    }

    /// What the core sent `to` (draining every action).
    pub fn sent_to(&mut self, to: PeerKey) -> Vec<Message> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { peer, message } if peer == to => Some(message),
                _ => None,
            })
            .collect()
    }
}

pub fn block(piece: u32, index: u32) -> BlockRef {
    BlockRef { piece, offset: index * crate::picker::BLOCK_SIZE, length: crate::picker::BLOCK_SIZE }
}
