//! Shoal against peers that lie, break the protocol or say nothing, with the real `shoal`
//! binary over TCP on loopback. Each hostile peer ([`EvilPeer`]) has a 127.x address of its
//! own; an honest libtorrent seed (another address) is what the download must complete from.
//!
//! Where the point is "Shoal drops that connection", the honest seed only joins (by dialling
//! Shoal) once the hostile peer has seen its connection closed: Shoal cannot have finished
//! by then, so the close is Shoal's verdict on the peer, not the end of the download.

mod support;

use std::time::Duration;

use shoal_proto::wire::{Handshake, Message, HANDSHAKE_LEN};
use shoal_proto::{InfoHash, PeerId};
use shoal_testkit::{assert_trees_equal, loopback_ip, lt_seed, Peer, PeerOpts};
use support::evil_peer::{full_bitfield, EvilPeer, RawClient, Script};
use support::{
    field_u64, skip, spawn_download, still_running, wait_complete, wait_started, Fixture,
};

/// 2 MiB in 64 KiB pieces: 32 pieces of 4 blocks each.
const PAYLOAD: u64 = 2 << 20;
const PIECE_KIB: u32 = 64;
/// Bound on Shoal dropping a hostile peer. Its handshake timeout (10 s) is the slowest verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);

fn honest_seed(fx: &Fixture, opts: PeerOpts) -> Peer {
    lt_seed(&fx.torrent.path, &fx.data, &opts).unwrap_or_else(|e| panic!("honest seed: {e}"))
}

fn args(listen: bool, peers: &[&EvilPeer]) -> Vec<String> {
    let mut args = Vec::new();
    if listen {
        args.push("--listen".to_owned());
        args.push(format!("{}:0", loopback_ip()));
    }
    for peer in peers {
        args.push("--peer".to_owned());
        args.push(peer.addr().to_string());
    }
    args
}

/// Shoal dials every hostile peer and must close each connection; only then does an honest
/// seed dial Shoal, and the download must complete with the right bytes.
fn dropped_then_rescued(fx: &Fixture, evil: &mut [EvilPeer]) {
    let out = fx.path("out");
    let refs: Vec<&EvilPeer> = evil.iter().collect();
    let mut shoal = spawn_download("shoal", &fx.torrent.path, &out, &args(true, &refs));
    let listen = wait_started(&mut shoal).expect("shoal reports its listen address");
    for peer in evil.iter_mut() {
        let how = peer.wait_closed(VERDICT_TIMEOUT);
        let label = peer.label().to_owned();
        eprintln!("{label}: Shoal closed the connection ({how}); the peer saw {:?}", peer.events());
        assert!(peer.accepted() >= 1);
    }
    assert!(still_running(&mut shoal), "shoal exited before any honest peer joined");
    let _seed = honest_seed(fx, PeerOpts::default().connect(listen));
    wait_complete(&mut shoal);
    assert_trees_equal(&fx.content(), &out.join("share"));
    for peer in evil.iter_mut() {
        peer.assert_no_violation();
    }
}

#[test]
fn liar_is_banned_while_an_honest_seed_completes_the_download() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 11);
    // Slow enough (about 8 s for the whole payload) that the liar, answering at once, gets
    // whole pieces of its own to fail long before the honest seed could finish alone.
    let honest =
        honest_seed(&fx, PeerOpts { upload_limit: Some(256 * 1024), ..PeerOpts::default() });
    let mut liar =
        EvilPeer::start("liar", Script::WrongBytes { pieces: fx.piece_count(), have_all: false });
    let out = fx.path("out");
    let mut peers = args(false, &[&liar]);
    peers.extend(["--peer".to_owned(), honest.addr().to_string()]);
    let mut shoal = spawn_download("shoal", &fx.torrent.path, &out, &peers);

    let how = liar.wait_closed(VERDICT_TIMEOUT);
    assert!(
        still_running(&mut shoal),
        "the liar's connection ({how}) only closed when shoal exited: it was never dropped"
    );
    let done = wait_complete(&mut shoal);
    assert_trees_equal(&fx.content(), &out.join("share"));

    assert!(liar.requests_answered() > 0, "Shoal never asked the liar for anything");
    assert_eq!(liar.dialled(), 1, "Shoal dialled a banned peer again: {:?}", liar.events());
    let piece = u64::from(PIECE_KIB) * 1024;
    assert!(
        field_u64(&done, "wasted") >= piece,
        "at least one failed piece should count as wasted: {done}"
    );
    liar.assert_no_violation();
}

#[test]
fn liar_alone_is_banned_and_an_honest_seed_joining_later_completes_the_download() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 12);
    let mut liar =
        EvilPeer::start("liar", Script::WrongBytes { pieces: fx.piece_count(), have_all: true });
    let out = fx.path("out");
    let mut shoal = spawn_download("shoal", &fx.torrent.path, &out, &args(true, &[&liar]));
    let listen = wait_started(&mut shoal).expect("listen address");

    let how = liar.wait_closed(VERDICT_TIMEOUT);
    eprintln!("liar dropped ({how}) after {} requests", liar.requests_answered());
    assert!(still_running(&mut shoal), "shoal exited without any honest peer");
    // A few seconds of download after the ban, during which Shoal must not come back.
    let _honest = honest_seed(
        &fx,
        PeerOpts { upload_limit: Some(512 * 1024), ..PeerOpts::default() }.connect(listen),
    );
    let done = wait_complete(&mut shoal);
    assert_trees_equal(&fx.content(), &out.join("share"));
    assert_eq!(liar.dialled(), 1, "Shoal dialled a banned peer again: {:?}", liar.events());
    assert!(field_u64(&done, "wasted") > 0, "the liar's data should count as wasted: {done}");
    liar.assert_no_violation();
}

#[test]
fn oversized_length_prefix_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 13);
    let mut evil = [
        EvilPeer::start("prefix 0x7fffffff", Script::LengthPrefix(0x7fff_ffff)),
        EvilPeer::start("prefix 0xffffffff", Script::LengthPrefix(u32::MAX)),
    ];
    dropped_then_rescued(&fx, &mut evil);
}

#[test]
fn have_beyond_the_piece_count_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 14);
    let mut evil = [
        EvilPeer::start("have(count)", Script::Have(fx.piece_count())),
        EvilPeer::start("have(u32::MAX)", Script::Have(u32::MAX)),
    ];
    dropped_then_rescued(&fx, &mut evil);
}

#[test]
fn bitfield_of_the_wrong_length_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 15);
    let right = full_bitfield(fx.piece_count());
    let mut short = right.clone();
    short.pop();
    let mut long = right.clone();
    long.push(0xff);
    let huge = vec![0xffu8; 512 * 1024];
    let mut evil = [
        EvilPeer::start("bitfield one byte short", Script::Bitfield(short)),
        EvilPeer::start("bitfield one byte long", Script::Bitfield(long)),
        EvilPeer::start("bitfield of 512 KiB", Script::Bitfield(huge)),
        EvilPeer::start("empty bitfield", Script::Bitfield(Vec::new())),
    ];
    dropped_then_rescued(&fx, &mut evil);
}

#[test]
fn flood_of_unrequested_blocks_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 16);
    // Twice what Shoal tolerates (16 MiB): it must hang up before the end.
    let mut evil = [EvilPeer::start("flood", Script::UnrequestedBlocks { total: 32 << 20 })];
    dropped_then_rescued(&fx, &mut evil);
    let events = evil[0].events().to_vec();
    assert!(
        !events.iter().any(|e| matches!(e, support::evil_peer::PeerEvent::Misbehaved { .. })),
        "Shoal swallowed all 32 MiB of unrequested blocks before hanging up: {events:?}"
    );
}

#[test]
fn garbage_instead_of_a_handshake_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 17);
    let mut http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>".to_vec();
    http.resize(256, b'x');
    let binary: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
    let mut evil = [
        EvilPeer::start("http answer", Script::Garbage(http)),
        EvilPeer::start("binary noise", Script::Garbage(binary)),
    ];
    dropped_then_rescued(&fx, &mut evil);
}

#[test]
fn handshake_for_another_torrent_gets_the_peer_dropped() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 18);
    let mut evil = [EvilPeer::start("wrong info hash", Script::WrongInfoHash)];
    dropped_then_rescued(&fx, &mut evil);
}

/// A peer that accepts Shoal's call and never answers, and connections to Shoal that never
/// send a handshake, are timed out; while they hang, the download goes on.
#[test]
fn silent_peers_tie_up_nothing() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 19);
    let mut mute = EvilPeer::start("mute", Script::Silent);
    let out = fx.path("out");
    let mut shoal = spawn_download("shoal", &fx.torrent.path, &out, &args(true, &[&mute]));
    let listen = wait_started(&mut shoal).expect("listen address");

    let partial = &Handshake::new(InfoHash(fx.info_hash()), PeerId([7; 20])).encode()[..20];
    // An encryption (MSE) handshake's public key, and then nothing.
    let key = &[0x55; shoal_proto::mse::KEY_LEN];
    let mut first: Vec<RawClient> = (0..8)
        .map(|i| RawClient::connect(&format!("silent #{i}"), listen, &[]))
        .chain((0..8).map(|i| RawClient::connect(&format!("half handshake #{i}"), listen, partial)))
        .chain((0..4).map(|i| RawClient::connect(&format!("MSE key only #{i}"), listen, key)))
        .collect();
    // Shoal gives up on all of them by itself (handshake timeouts), without a peer to help.
    mute.wait_closed(VERDICT_TIMEOUT);
    for client in &mut first {
        client.assert_closed_within(VERDICT_TIMEOUT);
    }
    assert!(still_running(&mut shoal), "shoal exited without any honest peer");

    // A second batch hangs on while an honest seed delivers everything.
    let _second: Vec<RawClient> =
        (0..16).map(|i| RawClient::connect(&format!("hanging #{i}"), listen, &[])).collect();
    let _seed = honest_seed(&fx, PeerOpts::default().connect(listen));
    wait_complete(&mut shoal);
    assert_trees_equal(&fx.content(), &out.join("share"));
    mute.assert_no_violation();
}

/// The same abuse from peers that dial Shoal: each connection is closed, and an honest seed
/// still gets through.
#[test]
fn abuse_on_the_listening_socket_is_hung_up_on() {
    if skip() {
        return;
    }
    let fx = Fixture::new(PAYLOAD, PIECE_KIB, 20);
    let out = fx.path("out");
    let mut shoal = spawn_download("shoal", &fx.torrent.path, &out, &args(true, &[]));
    let listen = wait_started(&mut shoal).expect("listen address");

    let info_hash = InfoHash(fx.info_hash());
    let good = |n: u8| Handshake::new(info_hash, PeerId([n; 20])).encode().to_vec();
    let mut other_torrent = info_hash;
    other_torrent.0[0] ^= 1;
    let then = |mut hs: Vec<u8>, m: &Message| {
        let mut buf = Default::default();
        m.encode(&mut buf);
        hs.extend_from_slice(&buf);
        hs
    };
    let mut oversized = good(1);
    oversized.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let mut http = b"GET /announce?info_hash=x HTTP/1.1\r\nHost: shoal\r\n\r\n".to_vec();
    http.resize(2 * HANDSHAKE_LEN, b' ');
    // Encryption (MSE) handshakes: a public key of 1 (it would force the shared secret), and
    // a valid key followed by more than the longest pad without the marker that must end it.
    let mut key_of_one = vec![0; shoal_proto::mse::KEY_LEN];
    key_of_one[shoal_proto::mse::KEY_LEN - 1] = 1;
    let mut no_marker = vec![0x55; shoal_proto::mse::KEY_LEN];
    no_marker.extend((0..2 * shoal_proto::mse::MAX_PAD).map(|i| (i * 31 % 251) as u8));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an HTTP request", http),
        (
            "a handshake for another torrent",
            Handshake::new(other_torrent, PeerId([2; 20])).encode().to_vec(),
        ),
        ("an oversized length prefix", oversized),
        ("a have beyond the piece count", then(good(3), &Message::Have(fx.piece_count()))),
        ("a short bitfield", then(good(4), &Message::Bitfield(vec![0xff].into()))),
        ("an MSE public key of 1", key_of_one),
        ("an MSE key and a pad without end", no_marker),
    ];
    let mut clients: Vec<RawClient> =
        cases.iter().map(|(label, bytes)| RawClient::connect(label, listen, bytes)).collect();
    for (client, (label, _)) in clients.iter_mut().zip(&cases) {
        eprintln!("waiting for Shoal to hang up on {label}");
        client.assert_closed_within(VERDICT_TIMEOUT);
    }
    assert!(still_running(&mut shoal), "shoal exited without any honest peer");

    let _seed = honest_seed(&fx, PeerOpts::default().connect(listen));
    wait_complete(&mut shoal);
    assert_trees_equal(&fx.content(), &out.join("share"));
}

/// Resident memory of a process, in bytes (Linux).
#[cfg(target_os = "linux")]
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kib * 1024
}

/// A leecher that asks for block after block and never reads the answers must not make Shoal
/// hold them all in memory: Shoal may stop serving it or hang up, but its memory stays bounded.
#[cfg(target_os = "linux")]
#[test]
fn peer_that_never_reads_cannot_make_shoal_buffer_without_bound() {
    use shoal_proto::wire::BlockRef;
    use std::io::Write;

    if skip() {
        return;
    }
    /// Requested in all: sixteen times the payload.
    const ROUNDS: u32 = 16;
    /// What Shoal may grow by while that happens.
    const GROWTH_LIMIT: u64 = 64 << 20;
    let fx = Fixture::new(16 << 20, PIECE_KIB, 21);
    let mut cmd = support::shoal_command(["seed".as_ref(), fx.torrent.path.as_os_str()]);
    cmd.arg("-o").arg(&fx.data).arg("--json");
    cmd.arg("--listen").arg(format!("{}:0", loopback_ip()));
    let mut shoal = shoal_testkit::ChildGuard::spawn("shoal seed", cmd).expect("starting shoal");
    let listen = wait_started(&mut shoal).expect("listen address");
    shoal.wait_event("seeding", support::START_TIMEOUT).expect("shoal seeds");
    let baseline = resident_bytes(shoal.pid());

    let mut leech = std::net::TcpStream::connect(listen).expect("connecting to shoal");
    leech.set_write_timeout(Some(Duration::from_secs(2))).expect("write timeout");
    let mut hello = Handshake::new(InfoHash(fx.info_hash()), PeerId([9; 20])).encode().to_vec();
    let mut interested = Default::default();
    Message::Interested.encode(&mut interested);
    hello.extend_from_slice(&interested);
    leech.write_all(&hello).expect("handshake");
    // Every full-size block (the last piece is short: left out).
    let mut requests = Default::default();
    for piece in 0..fx.piece_count() - 1 {
        for offset in (0..PIECE_KIB * 1024).step_by(16384) {
            Message::Request(BlockRef { piece, offset, length: 16384 }).encode(&mut requests);
        }
    }
    let mut peak = baseline;
    for round in 0..ROUNDS {
        // Shoal refusing to take more requests, or hanging up, is a fine answer.
        if let Err(e) = leech.write_all(&requests) {
            eprintln!("Shoal stopped taking requests after {round} rounds: {e}");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(resident_bytes(shoal.pid()));
        assert!(
            peak < baseline + GROWTH_LIMIT,
            "after {} rounds of requests never read, Shoal grew from {baseline} to {peak} bytes",
            round + 1
        );
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        peak = peak.max(resident_bytes(shoal.pid()));
    }
    assert!(
        peak < baseline + GROWTH_LIMIT,
        "a peer that never reads made Shoal grow from {baseline} to {peak} bytes"
    );
    assert!(still_running(&mut shoal), "shoal seed died");
}
