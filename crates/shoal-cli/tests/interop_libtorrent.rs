//! `shoal` against libtorrent 2.0 (the engine of qBittorrent, Deluge and many others), both
//! ways, on loopback: direct connections, magnets (metadata from libtorrent), opentracker over
//! HTTP and UDP, `--only`, a .torrent fetched over HTTP, and `shoal seed PATH`.
//!
//! Every peer has its own 127.x address. Every transfer is bounded in time and checked byte for
//! byte against the source.

mod interop_support;

use std::time::Duration;

use interop_support::*;
use shoal_testkit::nat::{self, NatHost};
use shoal_testkit::upnp;
use shoal_testkit::*;

#[test]
fn libtorrent_seeds_to_shoal_given_the_torrent_and_the_peer() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(11);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default()).unwrap();
    let out = fx.out("shoal");
    let complete = shoal_download(&[
        arg(&fx.torrent.path),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.addr().to_string()),
    ]);
    assert_eq!(complete["info_hash"], fx.torrent.info_hash.as_str(), "{complete}");
    assert_eq!(complete["connections_by_source"]["manual"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn libtorrent_seeds_to_shoal_from_a_bare_magnet() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(12);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default()).unwrap();
    let out = fx.out("shoal-magnet");
    // no name, no tracker, no x.pe: the info dictionary has to come from libtorrent (BEP 9)
    shoal_download(&[
        arg(fx.bare_magnet()),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.addr().to_string()),
    ]);
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

/// libtorrent seeds and announces to opentracker; Shoal is given no peer, only the tracker
/// URL (`http` or `udp` announce), so the tracker's peer list is its only way to the seed.
fn libtorrent_seeds_to_shoal_through_opentracker(seed_no: u64, udp: bool) {
    let fx = Fixture::new(seed_no);
    let mut tracker = opentracker(&[]).unwrap();
    tracker.allow(&fx.torrent.info_hash).unwrap();
    let seed =
        lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default().tracker(tracker.announce_url()))
            .unwrap();
    assert_eq!(seed.ready_event()["tracker"], "ok", "libtorrent announced: {}", seed.ready_event());
    wait_for_tracker_peers(tracker.addr(), &fx.torrent.info_hash, 1);

    let url = if udp { tracker.udp_url() } else { tracker.announce_url() };
    let out = fx.out("shoal-tracker");
    let complete = shoal_download(&[
        arg(&fx.torrent.path),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--tracker"),
        arg(url),
    ]);
    assert_eq!(complete["connections_by_source"]["tracker"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn libtorrent_seeds_to_shoal_through_opentracker_http() {
    if skip_interop() {
        return;
    }
    libtorrent_seeds_to_shoal_through_opentracker(13, false);
}

#[test]
fn libtorrent_seeds_to_shoal_through_opentracker_udp() {
    if skip_interop() {
        return;
    }
    libtorrent_seeds_to_shoal_through_opentracker(14, true);
}

#[test]
fn shoal_seeds_to_libtorrent_directly() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(15);
    let mut seed = shoal_seed(&fx.torrent.path, loopback_ip(), &[arg("-o"), arg(&fx.data)]);
    assert!(
        seed.magnet().contains(&fx.torrent.info_hash),
        "magnet {} is not for {}",
        seed.magnet(),
        fx.torrent.info_hash
    );
    let out = fx.out("lt");
    let mut leech =
        lt_leech(&fx.torrent.path, &out, &PeerOpts::default().connect(seed.addr())).unwrap();
    let done = seed.serve(&mut leech);
    assert_eq!(done["bytes"], fx.torrent.total_size, "{done}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn shoal_seeds_to_libtorrent_through_opentracker() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(16);
    let mut tracker = opentracker(&[]).unwrap();
    tracker.allow(&fx.torrent.info_hash).unwrap();
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[arg("-o"), arg(&fx.data), arg("--tracker"), arg(tracker.announce_url())],
    );
    wait_for_tracker_peers(tracker.addr(), &fx.torrent.info_hash, 1);
    // no `connect`: libtorrent learns Shoal's address from the tracker only
    let out = fx.out("lt-tracker");
    let opts = PeerOpts::default().tracker(tracker.announce_url());
    let mut leech = lt_leech(&fx.torrent.path, &out, &opts).unwrap();
    seed.serve(&mut leech);
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn shoal_downloads_only_the_chosen_file() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(17);
    let chosen = "nested/deeper/gamma.bin";
    let index = fx.file_index(chosen);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default()).unwrap();
    let out = fx.out("shoal-only");
    shoal_download(&[
        arg(&fx.torrent.path),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.addr().to_string()),
        arg("--only"),
        arg(index.to_string()),
    ]);
    // Pieces shared with unselected files are kept in Shoal's part-file folder, by design:
    // none of the other files may appear.
    let files: Vec<String> = files_under(&downloaded(&out))
        .into_iter()
        .filter(|f| !f.starts_with(".shoal-parts-"))
        .collect();
    assert_eq!(files, vec![chosen.to_owned()], "files after --only {index}");
    assert_trees_equal(&fx.shared().join(chosen), &downloaded(&out).join(chosen));
}

#[test]
fn shoal_downloads_a_torrent_from_an_http_url() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(18);
    let bytes = std::fs::read(&fx.torrent.path).unwrap();
    let server = HttpFile::serve("files/share.torrent", bytes);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &PeerOpts::default()).unwrap();
    let out = fx.out("shoal-url");
    shoal_download(&[
        arg(server.url()),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(format!("{}:0", loopback_ip())),
        arg("--peer"),
        arg(seed.addr().to_string()),
    ]);
    assert_eq!(server.times_served(), 1, "the .torrent was fetched once");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

#[test]
fn shoal_seeds_a_path_and_libtorrent_leeches_its_magnet() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(19);
    let ip = loopback_ip();
    // no .torrent: Shoal makes one in memory, with the piece size asked for, and prints its
    // magnet
    let mut seed = shoal_seed(&fx.shared(), ip, &[arg("--piece-size"), arg("64KiB")]);
    let addr = seed.addr();
    assert_eq!(addr.ip(), ip, "listens where told");
    let magnet = seed.magnet().to_owned();
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet}");
    assert_eq!(magnet_params(&magnet, "x.pe"), vec![addr.to_string()], "x.pe of {magnet}");

    let out = fx.out("lt-from-path");
    let opts = PeerOpts::default().connect(addr).timeout(Duration::from_secs(90));
    let mut leech = lt_leech(&magnet, &out, &opts).unwrap();
    seed.serve(&mut leech);
    let events = leech.process().events();
    let metadata = events.iter().find(|e| e["event"] == "metadata");
    let metadata = metadata.expect("libtorrent got the metadata from Shoal");
    assert_eq!(metadata["piece_length"], 65536, "the piece size asked for: {metadata}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

/// The Mainline DHT on loopback, all nodes libtorrent's but ours: a bootstrap node, and a
/// libtorrent seeder that announces itself into the DHT through it.
fn libtorrent_seed_in_a_dht(fx: &Fixture) -> (DhtNode, Peer) {
    let node = lt_dht_node(loopback_ip(), Duration::from_secs(300)).expect("a DHT node");
    let opts = PeerOpts {
        extra_args: vec!["--dht-bootstrap".into(), node.addr.to_string()],
        ..PeerOpts::default()
    };
    let seed = lt_seed(&fx.torrent.path, &fx.data, &opts).expect("the seed starts");
    (node, seed)
}

/// A bare magnet (no tracker, no peer) downloads: the DHT names the seed, the seed sends the
/// metadata (BEP 9). The nodes Shoal learnt are saved at exit, and a second run that has only
/// them (its bootstrap node is dead) finds the seed again.
#[test]
fn libtorrent_seeds_to_shoal_found_through_the_dht() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(31);
    let (node, seed) = libtorrent_seed_in_a_dht(&fx);
    let state = fx.out("dht-state").join("dht.json");
    let download = |out: &std::path::Path, bootstrap: String| {
        shoal_download(&[
            arg(fx.bare_magnet()),
            arg("-o"),
            arg(out),
            arg("--listen"),
            arg(format!("{}:0", loopback_ip())),
            arg("--dht-bootstrap"),
            arg(bootstrap),
            arg("--dht-state"),
            arg(&state),
        ])
    };
    let out = fx.out("shoal-dht");
    let complete = download(&out, node.addr.to_string());
    assert_eq!(
        complete["connections_by_source"]["dht"], 1,
        "the seed came from the DHT: {complete}"
    );
    assert_trees_equal(&fx.shared(), &downloaded(&out));
    let saved = std::fs::read_to_string(&state).expect("the DHT's nodes are saved at exit");
    let nodes: serde_json::Value = serde_json::from_str(&saved).expect("JSON");
    let nodes: Vec<&str> =
        nodes["nodes"].as_array().expect("a list").iter().flat_map(|n| n.as_str()).collect();
    assert!(
        nodes.contains(&node.addr.to_string().as_str())
            || nodes.contains(&seed.addr().to_string().as_str()),
        "the bootstrap node or the seed is among the saved nodes: {saved}"
    );
    // Nothing listens on port 9 of this address: only the saved nodes can help.
    let again = fx.out("shoal-dht-again");
    download(&again, format!("{}:9", loopback_ip()));
    assert_trees_equal(&fx.shared(), &downloaded(&again));
}

/// The same bare magnet while Shoal's DHT node is flooded (tests/peers/dht_flood.py: 2,000
/// queries a second from 50,000 spoofed sources, started before Shoal): the lookup still
/// finds the seed and the download completes. A node that answered the flood without
/// bounds, or choked on it, would not get its own lookups through.
#[test]
fn shoal_downloads_through_the_dht_while_its_node_is_flooded() {
    if skip_interop() {
        return;
    }
    if !shoal_testkit::netns::is_root() {
        println!("SKIP: the flood's spoofed sources need a raw socket (root)");
        return;
    }
    let fx = Fixture::new(36);
    let (node, _seed) = libtorrent_seed_in_a_dht(&fx);
    // The DHT binds the listen port's number on UDP: flood it before Shoal starts.
    let ip = loopback_ip();
    let listen = std::net::SocketAddr::from((ip, free_port(ip).expect("a free port")));
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(peer_script("dht_flood.py").expect("the flood driver"))
        .args(["--target", &listen.to_string()])
        // Longer than any download may take: the guard ends it when the test does.
        .args(["--sources", "50000", "--rate", "2000", "--seconds", "600"]);
    let mut flood = ChildGuard::spawn("dht-flood", cmd).expect("the flood starts");
    flood.wait_event("flooding", Duration::from_secs(10)).expect("the flood is on");
    let out = fx.out("shoal-dht-flooded");
    let complete = shoal_download(&[
        arg(fx.bare_magnet()),
        arg("-o"),
        arg(&out),
        arg("--listen"),
        arg(listen.to_string()),
        arg("--dht-bootstrap"),
        arg(node.addr.to_string()),
    ]);
    assert_eq!(complete["connections_by_source"]["dht"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
    assert!(flood.wait_exit(Duration::from_millis(0)).is_err(), "the flood lasted the download");
}

/// `shoal seed` announces itself into the DHT (the bootstrap node, the only node there is,
/// stores it); a libtorrent leecher given only the bare magnet finds it there.
#[test]
fn shoal_seeds_to_libtorrent_found_through_the_dht() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(32);
    let mut node = lt_dht_node(loopback_ip(), Duration::from_secs(300)).expect("a DHT node");
    let bootstrap = vec!["--dht-bootstrap".to_owned(), node.addr.to_string()];
    let state = fx.out("dht-state").join("dht.json");
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[
            arg("-o"),
            arg(&fx.data),
            arg(&bootstrap[0]),
            arg(&bootstrap[1]),
            arg("--dht-state"),
            arg(&state),
        ],
    );
    assert!(
        seed.started["dht"].is_string(),
        "the started event names the DHT's address: {}",
        seed.started
    );
    // Before any leecher exists (it would announce itself, and Shoal's lookups would find
    // it): the node holds a peer for the torrent, which only Shoal's announce can have put.
    node.process
        .wait_for("a peer stored by the DHT node", Duration::from_secs(60), |e| {
            event_name(e) == Some("dht") && e["peers"].as_u64().is_some_and(|n| n >= 1)
        })
        .expect("Shoal announces itself into the DHT");
    let out = fx.out("lt-dht");
    let opts = PeerOpts { extra_args: bootstrap, ..PeerOpts::default() };
    let mut leech = lt_leech(fx.bare_magnet(), &out, &opts).unwrap();
    let done = seed.serve(&mut leech);
    assert_eq!(done["bytes"], fx.torrent.total_size, "{done}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

/// Peer exchange sent (BEP 11): two libtorrent leechers that know only `shoal seed` (no
/// tracker, no DHT) hear of each other from it and connect. The seed sends slowly, so they are
/// still leeching when its first PEX message arrives.
#[test]
fn shoal_tells_libtorrent_leechers_of_each_other() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(33);
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[arg("-o"), arg(&fx.data), arg("--max-upload-rate"), arg("256KiB")],
    );
    let opts = PeerOpts { keep_seeding: true, ..PeerOpts::default().connect(seed.addr()) };
    let (out_a, out_b) = (fx.out("lt-a"), fx.out("lt-b"));
    let mut a = lt_leech(&fx.torrent.path, &out_a, &opts).unwrap();
    let mut b = lt_leech(&fx.torrent.path, &out_b, &opts).unwrap();
    seed.serve(&mut a);
    seed.serve(&mut b);
    assert_trees_equal(&fx.shared(), &downloaded(&out_a));
    assert_trees_equal(&fx.shared(), &downloaded(&out_b));
    let met = |from: &mut Peer, other: std::net::IpAddr| {
        from.process().events().iter().any(|e| {
            e["event"] == "peer_connected"
                && e["peer"]
                    .as_str()
                    .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
                    .is_some_and(|p| p.ip() == other)
        })
    };
    let (ip_a, ip_b) = (a.addr().ip(), b.addr().ip());
    assert!(
        met(&mut a, ip_b) || met(&mut b, ip_a),
        "the leechers never connected to each other: A saw {:?}, B saw {:?}",
        a.process().events(),
        b.process().events()
    );
}

/// Local service discovery (BEP 14), Shoal to Shoal: in a private namespace (its LAN is a
/// veth), a `shoal download` of a bare magnet, with no DHT, tracker or peer, finds
/// `shoal seed` through the LAN's multicast group.
#[test]
fn shoal_finds_shoal_on_the_lan() {
    if skip_interop() {
        return;
    }
    in_netns_unless("shoal_finds_shoal_on_the_lan", None, |_ws| {
        let fx = Fixture::new(34);
        let with_lsd = |name: &str, args: &[std::ffi::OsString]| {
            let mut cmd = std::process::Command::new(shoal_path());
            cmd.env("SHOAL_NO_LSD", "0");
            spawn_shoal_through(name, cmd, args)
        };
        let mut seed = with_lsd(
            "shoal-seed-lan",
            &[arg("seed"), arg(&fx.torrent.path), arg("-o"), arg(&fx.data), arg("--no-webrtc")],
        );
        seed.wait_event("seeding", SEED_START_TIMEOUT).expect("the seed starts");
        let out = fx.out("shoal-lan");
        let mut download = with_lsd(
            "shoal-download-lan",
            &[arg("download"), arg(fx.bare_magnet()), arg("-o"), arg(&out), arg("--no-webrtc")],
        );
        if let Err(e) = download.wait_success(TRANSFER_TIMEOUT) {
            panic!("the download through LSD did not succeed: {e}\n{}", seed.output_tail());
        }
        let complete = download
            .events()
            .iter()
            .find(|e| event_name(e) == Some("complete"))
            .cloned()
            .expect("a complete event");
        // Whichever heard the other's announce first dialled: the seed (the download's
        // announce comes last, so usually this), or the download. Nothing else named either.
        let by_source = &complete["connections_by_source"];
        let found =
            by_source["lsd"].as_u64().unwrap_or(0) + by_source["incoming"].as_u64().unwrap_or(0);
        assert_eq!(found, 1, "{complete}");
        assert_trees_equal(&fx.shared(), &downloaded(&out));
    });
}

/// Port mapping, against Debian's miniupnpd on a NAT router (`shoal_testkit::nat`): `shoal
/// seed` on a host behind it asks the router to forward its port (PCP, the first protocol
/// Shoal tries; then a router that speaks UPnP IGD only), reports the public address in a
/// `port_mapping` event, and libtorrent leechers on the internet side (one over TCP, one over
/// uTP only) download by dialling that address, which the router's filter drops unless a
/// mapping holds. On SIGTERM the seed deletes its mappings.
#[test]
fn libtorrent_reaches_shoal_behind_a_nat_through_port_mapping() {
    // The seed deletes its mappings within 3 s of SIGTERM; miniupnpd then updates nftables.
    const STOP_WAIT: Duration = Duration::from_secs(10);
    let test = "libtorrent_reaches_shoal_behind_a_nat_through_port_mapping";
    if skip_interop() {
        return;
    }
    in_netns_unless(test, upnp::unavailable(), |_ws| {
        let internet = nat::internet_servers().expect("an address on the internet side");
        let fx = Fixture::new(35);
        for (index, protocols, expected) in
            [(1, upnp::Protocols::All, "pcp"), (2, upnp::Protocols::UpnpOnly, "upnp")]
        {
            let host = NatHost::with_port_mapping(index, protocols).expect("a router");
            let mut cmd = host.command(shoal_path());
            cmd.env("SHOAL_NO_PORT_MAPPING", "0");
            let args = [
                arg("seed"),
                arg(&fx.torrent.path),
                arg("-o"),
                arg(&fx.data),
                arg("--no-webrtc"),
                arg("--listen"),
                arg(format!("{}:0", host.lan_addr())),
                // The DHT on (so its UDP port is mapped too), joining through nobody.
                arg("--dht-bootstrap"),
                arg(format!("{internet}:9")),
                arg("--dht-state"),
                arg(fx.out(&format!("dht-{index}.json"))),
            ];
            let mut seed = spawn_shoal_through(&format!("shoal-seed-nat-{expected}"), cmd, &args);
            let started = seed.wait_event("started", SEED_START_TIMEOUT).expect("the seed starts");
            let mapping = seed.wait_event("port_mapping", SEED_START_TIMEOUT).expect("a report");
            assert_eq!(mapping["mapped"], true, "{mapping}\n{}", host.router_state());
            assert_eq!(mapping["protocol"], expected, "{mapping}");
            let listen: std::net::SocketAddr = started["listen"].as_str().unwrap().parse().unwrap();
            let dht: std::net::SocketAddr = started["dht"].as_str().unwrap().parse().unwrap();
            let public = std::net::SocketAddr::from((host.public_addr(), listen.port()));
            assert_eq!(mapping["tcp"], public.to_string(), "{mapping}");
            // UDP: uTP's (the listen port's UDP side), and the DHT's own port beside it.
            assert_ne!(dht.port(), listen.port(), "uTP holds the listen port's UDP side");
            let public_udp = std::net::SocketAddr::from((host.public_addr(), listen.port()));
            assert_eq!(mapping["udp"], public_udp.to_string(), "{mapping}");
            let public_dht = std::net::SocketAddr::from((host.public_addr(), dht.port()));
            assert_eq!(mapping["dht"], public_dht.to_string(), "{mapping}");
            let router = host.port_mapper().expect("miniupnpd");
            let forwarded = router.port_mappings().expect("the router's mappings");
            let wanted = [("TCP", listen.port()), ("UDP", listen.port()), ("UDP", dht.port())];
            for (protocol, port) in wanted {
                assert!(
                    forwarded.iter().any(|m| m.protocol == protocol
                        && m.external_port == port
                        && m.internal == std::net::SocketAddrV4::new(host.lan_addr(), port)),
                    "no {protocol} mapping of port {port}: {forwarded:?}"
                );
            }

            // Over TCP (the listen port), then over uTP only (its UDP side; libtorrent sends
            // uTP only from an interface with a route to the peer).
            let link = host.internet_link_addr();
            for (transport, opts) in [("tcp", PeerOpts::default()), ("utp", utp_only())] {
                let out = fx.out(&format!("lt-behind-nat-{expected}-{transport}"));
                let ip = if transport == "utp" { link } else { internet };
                let opts = PeerOpts { ip: Some(ip), ..opts }.connect(public);
                let mut leech = lt_leech(&fx.torrent.path, &out, &opts).expect("libtorrent starts");
                if let Err(e) = leech.wait_done(TRANSFER_TIMEOUT) {
                    panic!(
                        "libtorrent ({transport}) did not download through the mapping: {e}\n\
                         --- seed ---\n{}\n--- router ---\n{}\n{}",
                        seed.output_tail(),
                        host.router_state(),
                        router.log()
                    );
                }
                assert_trees_equal(&fx.shared(), &downloaded(&out));
            }

            seed.stop();
            router
                .wait_port_mappings("the seed's mappings removed at exit", STOP_WAIT, |m| {
                    m.is_empty()
                })
                .expect("no mapping left");
        }
    });
}

fn lt_encryption(mode: &str) -> Vec<String> {
    vec!["--encryption".into(), mode.into()]
}

/// Protocol encryption (MSE), Shoal dialling: a libtorrent seeder that takes RC4-encrypted
/// connections only (both ways) serves `shoal download` with its defaults (`prefer`), and the
/// connection is counted as encrypted; a plaintext-only one serves it too.
#[test]
fn libtorrent_requiring_encryption_seeds_to_shoal() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(47);
    let opts = PeerOpts { extra_args: lt_encryption("forced"), ..PeerOpts::default() };
    let seed = lt_seed(&fx.torrent.path, &fx.data, &opts).unwrap();
    let out = fx.out("shoal-encrypted");
    let complete = shoal_download_from(&fx.torrent.path, &out, seed.addr(), &[]);
    assert_eq!(complete["encrypted_connections"], 1, "{complete}");
    assert_eq!(complete["connections_by_transport"]["tcp"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));

    // A plaintext-only seeder drops the encrypted handshake; Shoal dials again in plaintext.
    let opts = PeerOpts { extra_args: lt_encryption("disabled"), ..PeerOpts::default() };
    let seed = lt_seed(&fx.torrent.path, &fx.data, &opts).unwrap();
    let out = fx.out("shoal-plaintext");
    let complete = shoal_download_from(&fx.torrent.path, &out, seed.addr(), &[]);
    assert_eq!(complete["encrypted_connections"], 0, "{complete}");
    assert_eq!(complete["connections_by_transport"]["tcp"], 1, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}

/// Protocol encryption, Shoal accepting: `shoal seed --encryption require` serves a libtorrent
/// leecher that encrypts, and a plaintext-only one, dialling the same seed meanwhile, gets
/// nothing. A libtorrent leecher with its defaults, against a seed that disables encryption,
/// falls back to plaintext and completes.
#[test]
fn shoal_seed_requiring_encryption_serves_only_encrypting_peers() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(48);
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[arg("-o"), arg(&fx.data), arg("--encryption"), arg("require")],
    );
    let plain = PeerOpts {
        extra_args: lt_encryption("disabled"),
        timeout: Duration::from_secs(10),
        ..PeerOpts::default().connect(seed.addr())
    };
    let out_plain = fx.out("lt-plain");
    let mut refused = lt_leech(&fx.torrent.path, &out_plain, &plain).unwrap();
    let encrypting = PeerOpts {
        extra_args: lt_encryption("forced"),
        ..PeerOpts::default().connect(seed.addr())
    };
    let out = fx.out("lt-encrypted");
    let mut leech = lt_leech(&fx.torrent.path, &out, &encrypting).unwrap();
    let done = seed.serve(&mut leech);
    assert_eq!(done["bytes"], fx.torrent.total_size, "{done}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
    let gave_up = refused
        .process()
        .wait_event("timeout", Duration::from_secs(60))
        .expect("the plaintext leecher gives up");
    assert_eq!(gave_up["bytes"], 0, "the plaintext leecher got data: {gave_up}");
    assert_eq!(gave_up["peers"], 0, "the plaintext leecher stayed connected: {gave_up}");

    let fx = Fixture::new(49);
    let mut seed = shoal_seed(
        &fx.torrent.path,
        loopback_ip(),
        &[arg("-o"), arg(&fx.data), arg("--encryption"), arg("disable")],
    );
    let out = fx.out("lt-default");
    let mut leech =
        lt_leech(&fx.torrent.path, &out, &PeerOpts::default().connect(seed.addr())).unwrap();
    let done = seed.serve(&mut leech);
    assert_eq!(done["bytes"], fx.torrent.total_size, "{done}");
}

/// uTP only: libtorrent with TCP off both ways.
fn utp_only() -> PeerOpts {
    PeerOpts { utp: true, extra_args: vec!["--no-tcp".into()], ..PeerOpts::default() }
}

/// uTP (BEP 29), Shoal dialling: a libtorrent seeder that speaks uTP only serves `shoal
/// download --peer`, over uTP (MSE with the plaintext method: both sides' defaults); one that
/// speaks both is reached over uTP, or over TCP with `--no-utp`.
#[test]
fn utp_only_libtorrent_seeds_to_shoal() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(50);
    let seed = lt_seed(&fx.torrent.path, &fx.data, &utp_only()).unwrap();
    let out = fx.out("shoal-utp");
    let complete = shoal_download_from(&fx.torrent.path, &out, seed.addr(), &[]);
    assert_eq!(complete["connections_by_transport"]["utp"], 1, "{complete}");
    assert_eq!(complete["encrypted_connections"], 0, "{complete}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));

    // A seeder that speaks both: uTP is chosen, as libtorrent and µTorrent prefer it;
    // `--no-utp` keeps to TCP.
    let both = PeerOpts { utp: true, ..PeerOpts::default() };
    let seed = lt_seed(&fx.torrent.path, &fx.data, &both).unwrap();
    for (flags, transport) in [(vec![], "utp"), (vec![arg("--no-utp")], "tcp")] {
        let out = fx.out(&format!("shoal-both-{transport}"));
        let complete = shoal_download_from(&fx.torrent.path, &out, seed.addr(), &flags);
        let by_transport = &complete["connections_by_transport"];
        assert_eq!(by_transport[transport], 1, "{complete}");
        let count = |t: &str| by_transport[t].as_u64().unwrap_or(0);
        assert_eq!(count("tcp") + count("utp"), 1, "one connection: {complete}");
        assert_trees_equal(&fx.shared(), &downloaded(&out));
    }
}

/// uTP, Shoal accepting: a libtorrent leecher that speaks uTP only downloads from `shoal seed`
/// (uTP on the listen port's UDP side).
#[test]
fn utp_only_libtorrent_leeches_from_shoal() {
    if skip_interop() {
        return;
    }
    let fx = Fixture::new(51);
    let mut seed = shoal_seed(&fx.torrent.path, loopback_ip(), &[arg("-o"), arg(&fx.data)]);
    let out = fx.out("lt-utp");
    let mut leech = lt_leech(&fx.torrent.path, &out, &utp_only().connect(seed.addr())).unwrap();
    let done = seed.serve(&mut leech);
    assert_eq!(done["bytes"], fx.torrent.total_size, "{done}");
    assert_trees_equal(&fx.shared(), &downloaded(&out));
}
