//! Peers that lie: corrupt blocks, and messages that break the protocol.

mod common;

use bytes::Bytes;
use common::*;
use shoal_proto::torrent::{DisconnectReason, ProtocolViolation, Refusal};
use shoal_proto::wire::{BlockRef, Message};
use shoal_sim::{Behaviour, NodeConfig, NodeId, Sim, SimConfig};

/// A peer serving corrupt blocks next to an honest seeder: its pieces fail, it is banned and
/// never connected again, and the leecher ends with the right bytes.
#[test]
fn corrupt_peer_is_banned_and_the_download_completes() {
    let mut sim = Sim::new(41, torrent(41, 4 * MIB, 128 * 1024));
    let pieces = sim.torrent().piece_count();
    let honest = sim.add_node(NodeConfig::seeder().upload(512 * KIB));
    // Misses one piece, which it can hardly download (1 KiB/s) and only from the leecher, so
    // it stays a leecher that keeps dialling back after the ban.
    let liar = sim.add_node(
        NodeConfig::leecher()
            .with_pieces(1..pieces)
            .download(KIB)
            .behaviour(Behaviour::CorruptBlocks),
    );
    let leecher = sim.add_node(NodeConfig::leecher());
    sim.introduce(leecher, honest);
    // One direction only: both dialling at once hits the simultaneous-open bug (see
    // `simultaneous_dials_keep_one_connection`).
    sim.introduce(leecher, liar);

    complete(&mut sim, leecher, secs(300));
    assert_content(&sim, leecher);
    let now = sim.now();
    let stats = sim.node(leecher).stats(now);
    assert!(stats.banned >= 1, "{}", summary(&sim));
    assert!(sim.node(leecher).log().pieces_failed >= 1);
    let log = sim.node(leecher).log();
    let ban = log
        .disconnects
        .iter()
        .find(|d| d.remote == liar && d.reason == DisconnectReason::Banned)
        .unwrap_or_else(|| panic!("the liar was not dropped as banned\n{}", summary(&sim)));
    let banned_at = ban.at;
    let connections_at_ban = sim.connections_between(leecher, liar);

    // The liar keeps dialling and a tracker keeps handing out its address: nothing gets
    // through.
    sim.introduce(liar, leecher);
    sim.introduce(leecher, liar);
    sim.run_for(secs(600));
    assert_eq!(sim.connections_between(leecher, liar), connections_at_ban, "{}", summary(&sim));
    assert!(!sim.is_connected(leecher, liar));
    let refused = sim
        .node(leecher)
        .log()
        .refusals
        .iter()
        .filter(|r| r.remote == liar && r.refusal == Refusal::Banned && r.at > banned_at);
    assert!(refused.count() >= 1, "the liar never tried again?\n{}", summary(&sim));
}

/// A seeder, a victim downloading from it, and a puppet whose every message is scripted.
fn puppet_scenario(seed: u64, codec: bool) -> (Sim, NodeId, NodeId) {
    let mut config = SimConfig::new(seed);
    config.net.codec = codec;
    let mut sim = Sim::with_config(config, torrent(seed, MIB, 32 * 1024));
    let seeder = sim.add_node(NodeConfig::seeder().upload(128 * KIB));
    let victim = sim.add_node(NodeConfig::leecher());
    let puppet = sim.add_node(NodeConfig::leecher().behaviour(Behaviour::Puppet));
    sim.introduce(victim, seeder);
    sim.introduce(victim, puppet);
    sim.run_until(|s| s.is_connected(victim, puppet), secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", summary(&sim)));
    (sim, victim, puppet)
}

/// Why the victim dropped the puppet: the core's protocol violations, and the driver's own
/// closes (a frame its codec refused).
#[derive(Debug)]
struct Drops {
    core: Vec<ProtocolViolation>,
    driver: Vec<String>,
}

impl Drops {
    fn is_empty(&self) -> bool {
        self.core.is_empty() && self.driver.is_empty()
    }
}

fn protocol_drops(sim: &Sim, victim: NodeId, puppet: NodeId) -> Drops {
    let log = sim.node(victim).log();
    let core =
        log.disconnects.iter().filter(|d| d.remote == puppet).filter_map(|d| match &d.reason {
            DisconnectReason::Protocol(violation) => Some(violation.clone()),
            _ => None,
        });
    let driver = log.driver_closes.iter().filter(|d| d.remote == puppet).map(|d| d.reason.clone());
    Drops { core: core.collect(), driver: driver.collect() }
}

/// Sends `messages` from the puppet, then checks the victim dropped it for a protocol
/// violation that `expect` recognises, and still completes its download correctly.
fn assert_dropped(name: &str, messages: Vec<Message>, expect: fn(&ProtocolViolation) -> bool) {
    for codec in [false, true] {
        let (mut sim, victim, puppet) = puppet_scenario(50 + name.len() as u64, codec);
        for m in messages.clone() {
            assert!(sim.inject(puppet, victim, m), "{name}: not connected");
        }
        sim.run_for(secs(1));
        let drops = protocol_drops(&sim, victim, puppet);
        let Some(violation) = drops.core.iter().find(|v| expect(v)) else {
            panic!(
                "{name} (codec {codec}): not the drop expected, got {drops:?}\n{}",
                summary(&sim)
            );
        };
        // Counted by kind, as status reports and `--json` events show it.
        let counted = sim.node(victim).stats(sim.now()).protocol_violations;
        assert!(counted.get(violation.kind()).is_some_and(|&n| n >= 1), "{counted:?}");
        assert!(!sim.is_connected(victim, puppet));
        complete(&mut sim, victim, secs(120));
        assert_content(&sim, victim);
    }
}

fn bad_bitfield(v: &ProtocolViolation) -> bool {
    matches!(v, ProtocolViolation::BadBitfield(_))
}

fn invalid_request(v: &ProtocolViolation) -> bool {
    matches!(v, ProtocolViolation::InvalidRequest(_))
}

fn piece_count() -> u32 {
    torrent(0, MIB, 32 * 1024).piece_count()
}

#[test]
fn have_beyond_the_piece_count() {
    let out_of_range =
        |v: &ProtocolViolation| matches!(v, ProtocolViolation::HaveOutOfRange { .. });
    assert_dropped("have", vec![Message::HaveNone, Message::Have(piece_count())], out_of_range);
    assert_dropped("have-max", vec![Message::Have(u32::MAX)], out_of_range);
}

#[test]
fn bitfield_of_the_wrong_length() {
    let short = Bytes::from(vec![0xff; (piece_count() / 8 - 1) as usize]);
    assert_dropped("bitfield-short", vec![Message::Bitfield(short)], bad_bitfield);
    let long = Bytes::from(vec![0; 4096]);
    assert_dropped("bitfield-long", vec![Message::Bitfield(long)], bad_bitfield);
}

#[test]
fn bitfield_after_other_messages() {
    // A late bitfield is tolerated as a batch of haves (aria2 sends one), but it must still be
    // well formed.
    let short = Bytes::from(vec![0xff; (piece_count() / 8 - 1) as usize]);
    assert_dropped(
        "late-bitfield-short",
        vec![Message::Interested, Message::Bitfield(short)],
        bad_bitfield,
    );
}

#[test]
fn requests_outside_the_torrent() {
    let beyond = BlockRef { piece: piece_count(), offset: 0, length: 16384 };
    assert_dropped("request-beyond", vec![Message::Request(beyond)], invalid_request);
    let huge = BlockRef { piece: 0, offset: 0, length: 1 << 20 };
    assert_dropped("request-huge", vec![Message::Request(huge)], invalid_request);
    let past_end = BlockRef { piece: 0, offset: 32 * 1024 - 100, length: 16384 };
    assert_dropped("request-past-end", vec![Message::Request(past_end)], invalid_request);
}

#[test]
fn garbage_extension_messages() {
    let junk = Bytes::from_static(b"this is not bencode");
    assert_dropped(
        "ext-handshake",
        vec![Message::Extended { id: 0, payload: junk.clone() }],
        |v| matches!(v, ProtocolViolation::BadExtendedHandshake(_)),
    );
    // Id 1 is the ut_metadata id we assign ourselves.
    assert_dropped("ut-metadata", vec![Message::Extended { id: 1, payload: junk }], |v| {
        matches!(v, ProtocolViolation::BadMetadataMessage(_))
    });
}

/// A frame longer than anything legal is refused by the codec as soon as its length prefix
/// arrives; the connection is closed by the driver, as the native reader does.
#[test]
fn oversized_frames() {
    for codec in [false, true] {
        let (mut sim, victim, puppet) = puppet_scenario(60, codec);
        let mut frame = (64u32 << 20).to_be_bytes().to_vec();
        frame.extend_from_slice(&[7, 0, 0, 0, 0]);
        assert!(sim.inject_bytes(puppet, victim, Bytes::from(frame)));
        sim.run_for(secs(1));
        let drops = protocol_drops(&sim, victim, puppet);
        assert!(drops.driver.iter().any(|d| d.contains("protocol error")), "{drops:?}");
        complete(&mut sim, victim, secs(120));
        assert_content(&sim, victim);

        // The same as a message value: an extended message of 2 MiB.
        let (mut sim, victim, puppet) = puppet_scenario(61, codec);
        let payload = Bytes::from(vec![0; 2 << 20]);
        sim.inject(puppet, victim, Message::Extended { id: 0, payload });
        sim.run_for(secs(20));
        assert!(!protocol_drops(&sim, victim, puppet).is_empty(), "{}", summary(&sim));
        complete(&mut sim, victim, secs(120));
        assert_content(&sim, victim);
    }
}

/// Things a peer may do that are merely useless, not violations: the connection stays.
#[test]
fn tolerated_oddities_keep_the_connection() {
    let (mut sim, victim, puppet) = puppet_scenario(70, false);
    let block = BlockRef { piece: 3, offset: 0, length: 16384 };
    let odd = vec![
        Message::HaveNone,
        Message::Unknown { id: 99 },
        Message::Suggest(u32::MAX),
        Message::Cancel(block),
        Message::Reject(block),
        Message::AllowedFast(u32::MAX),
        Message::Port(0),
        Message::KeepAlive,
        // A request while choked, for a piece the victim does not have: refused with a reject.
        Message::Request(block),
        // A block nobody asked for.
        Message::Piece { piece: 3, offset: 0, data: Bytes::from(vec![1; 16384]) },
        Message::Piece { piece: 0, offset: 100, data: Bytes::from(vec![1; 10]) },
        // A late bitfield (aria2 sends one after `have none`): taken as haves.
        Message::Bitfield(Bytes::from(vec![0; piece_count().div_ceil(8) as usize])),
        // WebTorrent from a magnet sends have-none / have-all once it has the metadata,
        // after other messages: taken like a late bitfield.
        Message::HaveNone,
        Message::Have(1),
        Message::HaveAll,
    ];
    for m in odd {
        sim.inject(puppet, victim, m);
    }
    sim.run_for(secs(2));
    assert!(sim.is_connected(victim, puppet), "{}", summary(&sim));
    assert!(protocol_drops(&sim, victim, puppet).is_empty());
    assert!(sim.node(puppet).log().received("reject") >= 1, "the request was not rejected");
    complete(&mut sim, victim, secs(120));
    assert_content(&sim, victim);
    assert!(sim.node(victim).stats(sim.now()).wasted >= 16384);
}

/// Unrequested blocks are tolerated up to a bound, then the sender is dropped.
#[test]
fn a_flood_of_unrequested_blocks_is_dropped() {
    let (mut sim, victim, puppet) = puppet_scenario(71, false);
    sim.inject(puppet, victim, Message::HaveNone);
    let data = Bytes::from(vec![9; 16384]);
    for i in 0..1100u32 {
        let piece = 31 - (i % 2);
        let offset = (i / 2 % 2) * 16384;
        sim.inject(puppet, victim, Message::Piece { piece, offset, data: data.clone() });
    }
    sim.run_for(secs(5));
    let drops = protocol_drops(&sim, victim, puppet);
    let flood =
        |v: &ProtocolViolation| matches!(v, ProtocolViolation::TooManyUnrequestedBytes { .. });
    assert!(drops.core.iter().any(flood), "{drops:?}\n{}", summary(&sim));
    complete(&mut sim, victim, secs(120));
    assert_content(&sim, victim);
}
