#!/usr/bin/python3
"""libtorrent (Debian python3-libtorrent 2.0.x) as a reference peer on loopback.

  lt_peer.py seed  TORRENT DATA_DIR  [options]   seed until stopped
  lt_peer.py leech SOURCE  OUT_DIR   [options]   download, then exit (or --keep-seeding)
  lt_peer.py dht-node [--ip IP] [--port N] [--dht-bootstrap HOST:PORT]...
                                                 a bare DHT node (no torrent) until stopped

SOURCE is a .torrent file or a magnet: URI. DATA_DIR / OUT_DIR is the directory that holds (or
will hold) the torrent's top-level file or folder.

Events on stdout (one JSON object a line):
  {"event":"ready","port":N,"ip":IP,"info_hash":HEX,...}   listening (seed: and verified seeding)
  {"event":"metadata","piece_length":N}                    magnet metadata received (leech)
  {"event":"progress","progress":0..1,"bytes":N,...}       about once a second (leech)
  {"event":"peer_connected","peer":"IP:PORT"} / peer_disconnected
  {"event":"done","seconds":S,"bytes":N,...}               download complete and flushed (leech)
  {"event":"timeout",...} (exit 3) / {"event":"error","message":...} (exit 2)
  {"event":"exit","reason":...,"uploaded":N}               on a clean stop
With DHT on (--dht-bootstrap, or dht-node):
  {"event":"ready","port":N,"ip":IP,"bootstrap":[...],...}  dht-node: port = its UDP (DHT) port
  {"event":"dht","nodes":N,"torrents":N,"peers":N}         whenever these counts change (checked
                                                           once a second): routing table nodes,
                                                           info hashes and peers stored here
  {"event":"dht_announced","seconds":S}                    seed: a DHT lookup returned this seed
  {"event":"dht_reply","peers":N,"seconds":S}              a DHT lookup for the torrent found peers

stdin: EOF stops the driver; the line {"cmd":"connect","peer":"HOST:PORT"} dials a peer (re-dialed
every second until a connection to it is seen: the other side may not be listening yet).

DHT is off unless --dht-bootstrap HOST:PORT (repeatable) names the nodes to bootstrap from: then
only those are used (never libtorrent's public default) and the filters that would drop nodes
sharing 127.0.0.0/8 are off, so that a DHT of a few loopback sessions works (see dht_settings()).
A seed then announces into the DHT every 5 s for its first minute and says "dht":"ok" in its
ready line once a lookup of its own returns it (waiting up to 15 s for that, else "pending"); a
leech re-announces every 5 s while it has no peer (magnet:?xt=urn:btih:HEX alone is enough).

Local service discovery, UPnP and NAT-PMP are off; uTP is off unless --utp; several
connections from one IP are allowed (every loopback peer may share 127.0.0.1); outgoing
connections leave from --ip so that each peer has its own address (Transmission and trackers key
peers by IP).
"""

import argparse
import os
import signal
import subprocess
import sys
import time

import libtorrent as lt

import peerlib
from peerlib import emit, fail, log


def dht_wanted(a):
    """DHT runs in a dht-node, and in a seed or leech given --dht-bootstrap."""
    return a.role == "dht-node" or bool(getattr(a, "dht_bootstrap", None))


def dht_settings(bootstrap):
    """DHT on, bootstrapped from exactly `bootstrap` (HOST:PORT strings; none = no entry point:
    never libtorrent's default public router), with the defences against crowded address ranges
    off: every node of a loopback DHT lives in 127.0.0.0/8."""
    for node in bootstrap:
        peerlib.parse_hostport(node)  # ValueError on a malformed one
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(bootstrap),
        # one routing-table entry per /24 (IPv4) otherwise: 127.0.0.2 and 127.0.0.3 would clash
        "dht_restrict_routing_ips": False,
        # likewise one node per /24 in each lookup
        "dht_restrict_search_ips": False,
        # BEP 42: node IDs derived from the external IP. (Local addresses already pass the
        # check, and the IP our peers see is 127.x, which varies per node: off to be sure.)
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        # drops packets from a few class A networks (not 127/8 in 2.0.8; off all the same)
        "dht_ignore_dark_internet": False,
        # per-IP packet rate above which a node is blocked for dht_block_timeout; in a DHT of a
        # handful of nodes each one sees all the traffic of the others
        "dht_block_ratelimit": 1000,
        "dht_read_only": False,
        "dht_privacy_lookups": False,
    }


def build_settings(a, user_agent):
    settings = {
        "listen_interfaces": "%s:%d" % (a.ip, a.port),
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_incoming_utp": a.utp,
        "enable_outgoing_utp": a.utp,
        "enable_incoming_tcp": not a.no_tcp,
        "enable_outgoing_tcp": not a.no_tcp,
        "allow_multiple_connections_per_ip": True,
        # Loopback test setups: trackers and web seeds on 127.x with arbitrary paths, peers on any
        # port, quick reconnects instead of the minute-long Internet defaults.
        "ssrf_mitigation": False,
        "no_connect_privileged_ports": False,
        "min_reconnect_time": 1,
        "peer_connect_timeout": 5,
        "stop_tracker_timeout": 1,
        "user_agent": user_agent,
        "alert_mask": (lt.alert_category.error | lt.alert_category.status | lt.alert_category.tracker
                       | lt.alert_category.peer | lt.alert_category.connect
                       | lt.alert_category.storage | lt.alert_category.piece_progress),
    }
    if a.ip != "0.0.0.0":
        settings["outgoing_interfaces"] = a.ip
    if dht_wanted(a):
        # The DHT uses the UDP socket of the listen interface (--ip/--port): one node per session.
        settings.update(dht_settings(a.dht_bootstrap))
        settings["alert_mask"] |= lt.alert_category.dht | lt.alert_category.dht_operation
    # Protocol encryption: libtorrent's default (enabled: both ways, either) unless asked.
    if a.encryption == "forced":
        settings.update({"out_enc_policy": int(lt.enc_policy.forced),
                         "in_enc_policy": int(lt.enc_policy.forced),
                         "allowed_enc_level": int(lt.enc_level.rc4), "prefer_rc4": True})
    elif a.encryption == "disabled":
        settings.update({"out_enc_policy": int(lt.enc_policy.disabled),
                         "in_enc_policy": int(lt.enc_policy.disabled)})
    if a.upload_limit:
        settings["upload_rate_limit"] = a.upload_limit
    if a.download_limit:
        settings["download_rate_limit"] = a.download_limit
    # Drivers built on this one (lt21_peer.py) add settings of their own libtorrent version.
    settings.update(getattr(a, "extra_settings", None) or {})
    return settings


def make_session(a, role):
    ses = lt.session(build_settings(a, "shoal-test-lt-%s/%s" % (role, lt.__version__)))
    if a.upload_limit or a.download_limit:
        # Peers on 127.x fall in libtorrent's unthrottled "local" class; put every address in the
        # global class so that the rate limits apply over loopback too.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    return ses


def add_params(source, save_path, trackers):
    if source.startswith("magnet:"):
        p = lt.parse_magnet_uri(source)
    else:
        if not os.path.isfile(source):
            fail("no such torrent file: %s" % source)
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(source)
    p.save_path = os.path.abspath(save_path)
    if trackers:
        p.trackers = list(trackers)
        p.flags |= lt.torrent_flags.override_trackers
    return p


def info_hash_hex(h):
    ih = h.info_hashes()
    return str(ih.v1) if ih.has_v1() else str(ih.get_best())


class Dialer:
    """Peers we were asked to dial: re-dialed every second until a connection to them is seen."""

    def __init__(self, handle, peers):
        self.handle = handle
        self.pending = {peerlib.parse_hostport(p) for p in peers}
        self.last = 0.0

    def add(self, text):
        try:
            self.pending.add(peerlib.parse_hostport(text))
        except ValueError as e:
            log("bad connect command:", e)
        self.last = 0.0

    def tick(self):
        if not self.pending or time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        connected = {(p.ip[0], p.ip[1]) for p in self.handle.get_peer_info()}
        self.pending -= connected
        for host, port in self.pending:
            self.handle.connect_peer((host, port))


def listen_socket_type(a):
    """The listen socket that says the peer is up: TCP's, or uTP's when TCP is off."""
    return lt.socket_type_t.udp if a.no_tcp and a.utp else lt.socket_type_t.tcp


def wait_listening(ses, life, timeout=15.0, socket_type=lt.socket_type_t.tcp):
    """Waits for the TCP (or `socket_type`) listen socket. Returns the port libtorrent bound and
    the other alerts popped meanwhile (the caller still has to see those, e.g.
    torrent_checked_alert)."""
    t0 = time.monotonic()
    others = []
    while time.monotonic() - t0 < timeout and not life.should_stop():
        for al in ses.pop_alerts():
            if isinstance(al, lt.listen_failed_alert):
                fail("listen failed: %s" % al.message())
            if isinstance(al, lt.listen_succeeded_alert) and al.socket_type == socket_type:
                return (ses.listen_port() if socket_type == lt.socket_type_t.tcp else al.port), others
            others.append(al)
        ses.wait_for_alert(100)
    fail("no listen socket after %.0f s" % timeout)


class DhtWatch:
    """The DHT side of a session: a {"event":"dht",...} line whenever the counts of routing-table
    nodes, stored info hashes or stored peers change (polled once a second through session
    stats), and re-announces of a torrent on a schedule."""

    METRICS = (("nodes", "dht.dht_nodes"), ("torrents", "dht.dht_torrents"), ("peers", "dht.dht_peers"))

    def __init__(self, ses, enabled, t0):
        self.ses = ses
        self.enabled = enabled
        self.t0 = t0  # when the session started
        self.last_poll = 0.0
        self.last_counts = None
        self.last_announce = None

    def on_alert(self, al):
        """Consumes the alerts it asked for. Returns False for any other alert."""
        if isinstance(al, lt.session_stats_alert):
            values = al.values
            counts = {k: int(values.get(m, 0)) for k, m in self.METRICS}
            if counts != self.last_counts:
                self.last_counts = counts
                emit("dht", **counts)
            return True
        if isinstance(al, lt.dht_bootstrap_alert):
            log("dht: bootstrap done after %.3f s" % (time.monotonic() - self.t0))
            return True
        if isinstance(al, lt.dht_reply_alert):
            emit("dht_reply", peers=al.num_peers, seconds=round(time.monotonic() - self.t0, 3))
            return True
        return False

    def tick(self):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last_poll >= 1.0:
            self.last_poll = now
            self.ses.post_session_stats()

    def announce_every(self, handle, interval):
        """force_dht_announce() every `interval` seconds, counted from the first call, for as long
        as the caller keeps calling this. libtorrent announces on its own once when the torrent
        starts (a seed: once checked), possibly before the DHT knows anybody, and then only every
        dht_announce_interval (15 min): a DHT of loopback nodes started seconds apart needs more."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.last_announce is None:
            self.last_announce = now
        elif now - self.last_announce >= interval:
            self.last_announce = now
            handle.force_dht_announce()


class PeerEvents:
    """peer_connected / peer_disconnected events, minus self-connections when the DHT is on.

    A torrent's DHT lookups return its own announce, and libtorrent dials itself: the dialing end
    is our own listen endpoint, the accepting end our IP with the dialer's ephemeral port, and
    both close once the handshake shows our own peer ID ("connected to ourselves"). The dialing
    end is never reported; the accepting end of any connection from our own IP is held back for a
    second and dropped if it closes as a self-connection. Without the DHT, events go out at once."""

    SELF = "connected to ourselves"  # errors::self_connection

    def __init__(self, ip, port, filter_self):
        self.me = (ip, port)
        self.filter_self = filter_self
        self.held = {}  # (ip, port) -> when its peer_connected was held back

    def connected(self, ep):
        if self.filter_self and ep == self.me:
            log("dialing ourselves (%s:%d, found in the DHT): not reported" % ep)
            return
        if self.filter_self and ep[0] == self.me[0]:
            self.held[ep] = time.monotonic()
            return
        emit("peer_connected", peer="%s:%d" % ep)

    def disconnected(self, ep, al):
        if self.filter_self and (ep == self.me or al.error.message() == self.SELF):
            if ep == self.me or self.held.pop(ep, None) is not None:
                if ep != self.me:
                    log("self-connection from %s:%d closed: not reported" % ep)
                return
        if self.held.pop(ep, None) is not None:
            emit("peer_connected", peer="%s:%d" % ep)
        emit("peer_disconnected", peer="%s:%d" % ep, reason=al.message())

    def tick(self, flush=False):
        now = time.monotonic()
        for ep, t in list(self.held.items()):
            if flush or now - t >= 1.0:
                del self.held[ep]
                emit("peer_connected", peer="%s:%d" % ep)


def handle_common_alert(al, dialer, peers):
    """Alerts both roles report the same way. Returns False for alerts it did not consume."""
    if isinstance(al, lt.peer_connect_alert):
        # posted for outgoing and (after the handshake) incoming connections alike
        peers.connected((al.ip[0], al.ip[1]))
        return True
    if isinstance(al, lt.peer_disconnected_alert):
        peers.disconnected((al.ip[0], al.ip[1]), al)
        return True
    if isinstance(al, (lt.torrent_error_alert, lt.file_error_alert)):
        fail("%s: %s" % (type(al).__name__, al.message()))
    if isinstance(al, (lt.tracker_error_alert, lt.tracker_warning_alert)):
        log("tracker:", al.message())
        return False
    return False


def run_commands(life, dialer):
    for cmd in life.commands():
        if cmd.get("cmd") == "connect" and isinstance(cmd.get("peer"), str):
            dialer.add(cmd["peer"])
        else:
            log("unknown command:", cmd)


def cmd_seed(a):
    if a.torrent.startswith("magnet:"):
        fail("seeding needs the .torrent file, not a magnet")
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    t0 = time.monotonic()
    ses = make_session(a, "seed")
    p = add_params(a.torrent, a.data_dir, a.tracker)
    if a.trust_data:
        p.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(p)
    port, pending_alerts = wait_listening(ses, life, socket_type=listen_socket_type(a))
    peers = PeerEvents(a.ip, port, dht_wanted(a))
    dialer = Dialer(h, a.connect)
    has_trackers = bool(h.trackers())
    tracker_state = "pending" if has_trackers else "none"
    dht = DhtWatch(ses, dht_wanted(a), t0)
    # "ok" once a DHT lookup of our own returns this seed: the DHT knows it
    dht_state = "pending" if dht.enabled else "none"
    ih_hex = info_hash_hex(h)
    ih_dht = h.info_hashes().get_best()  # the v1 hash, which is what a v1 torrent announces
    last_lookup = 0.0
    ready = False
    checked = False
    t_checked = None
    while not life.should_stop():
        for al in pending_alerts + ses.pop_alerts():
            if handle_common_alert(al, dialer, peers) or dht.on_alert(al):
                continue
            if isinstance(al, lt.dht_get_peers_reply_alert):
                if dht_state != "ok" and str(al.info_hash) == str(ih_dht) and any(
                        peer[1] == port and a.ip in (peer[0], "0.0.0.0") for peer in al.peers()):
                    dht_state = "ok"
                    emit("dht_announced", seconds=round(time.monotonic() - t0, 3))
            elif isinstance(al, lt.torrent_checked_alert):
                checked = True
            elif isinstance(al, lt.tracker_reply_alert) and tracker_state == "pending":
                tracker_state = "ok"
            elif isinstance(al, lt.tracker_error_alert) and tracker_state == "pending":
                tracker_state = "error"
        pending_alerts = []
        run_commands(life, dialer)
        dialer.tick()
        dht.tick()
        peers.tick()
        st = h.status()
        now = time.monotonic()
        if dht.enabled and t_checked is not None and now - t_checked < 60:
            # Announce every 5 s for the first minute: DHT nodes (the bootstrap one, Shoal) may
            # come up after us. Look ourselves up every 2 s until a node returns us.
            dht.announce_every(h, 5.0)
            if dht_state != "ok" and now - last_lookup >= 2.0:
                last_lookup = now
                ses.dht_get_peers(ih_dht)
        # seed mode skips the check: it is "checked" as soon as it says it is seeding
        checked = checked or (a.trust_data and st.is_seeding)
        if not ready and checked:
            if not st.is_seeding:
                fail("data under %s does not match the torrent: %d of %d pieces present"
                     % (a.data_dir, st.num_pieces, h.torrent_file().num_pieces()))
            t_checked = t_checked or time.monotonic()
            # With a tracker, wait (briefly) for its first answer so that a leecher started right
            # after "ready" finds us in the swarm; likewise for the DHT.
            if ((tracker_state != "pending" or now - t_checked > 10)
                    and (dht_state != "pending" or now - t_checked > 15)):
                extra = {"dht": dht_state} if dht.enabled else {}
                emit("ready", port=port, ip=a.ip, info_hash=ih_hex, tracker=tracker_state,
                     pieces=h.torrent_file().num_pieces(), libtorrent=lt.__version__, **extra)
                ready = True
        ses.wait_for_alert(100)
    peers.tick(flush=True)
    st = h.status()
    emit("exit", reason=life.reason, uploaded=st.all_time_upload)
    ses.pause()


def cmd_leech(a):
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    os.makedirs(a.out_dir, exist_ok=True)
    ses = make_session(a, "leech")
    p = add_params(a.source, a.out_dir, a.tracker)
    t0 = time.monotonic()
    h = ses.add_torrent(p)
    port, pending_alerts = wait_listening(ses, life, socket_type=listen_socket_type(a))
    peers = PeerEvents(a.ip, port, dht_wanted(a))
    emit("ready", port=port, ip=a.ip, info_hash=info_hash_hex(h), libtorrent=lt.__version__)
    dialer = Dialer(h, a.connect)
    dht = DhtWatch(ses, dht_wanted(a), t0)
    t_first_piece = None
    last_progress = 0.0
    done = False
    while not life.should_stop():
        for al in pending_alerts + ses.pop_alerts():
            if handle_common_alert(al, dialer, peers) or dht.on_alert(al):
                continue
            if isinstance(al, lt.metadata_received_alert):
                info = al.handle.torrent_file()
                emit("metadata", seconds=round(time.monotonic() - t0, 3),
                     piece_length=info.piece_length() if info is not None else None)
            elif isinstance(al, lt.piece_finished_alert) and t_first_piece is None:
                t_first_piece = time.monotonic() - t0
            elif isinstance(al, lt.hash_failed_alert):
                emit("hash_failed", piece=al.piece_index)
        pending_alerts = []
        run_commands(life, dialer)
        dialer.tick()
        dht.tick()
        peers.tick()
        st = h.status()
        now = time.monotonic()
        if not done and st.num_peers == 0:
            # libtorrent's own first announce may have gone out before the DHT knew the seed
            dht.announce_every(h, 5.0)
        if not done and st.has_metadata and (st.is_seeding or st.is_finished):
            seconds = now - t0
            flush(ses, h)
            done = True
            emit("done", seconds=round(seconds, 3), bytes=st.total_wanted_done,
                 first_piece_seconds=round(t_first_piece, 3) if t_first_piece is not None else None,
                 mbps=round(st.total_wanted_done / 1e6 / seconds, 2) if seconds > 0 else None)
            if not a.keep_seeding:
                break
        if not done and now - last_progress >= 1.0:
            last_progress = now
            emit("progress", progress=round(st.progress, 4), bytes=st.total_wanted_done,
                 total=st.total_wanted, download_rate=st.download_rate, peers=st.num_peers)
        if not done and now - t0 > a.timeout:
            emit("timeout", seconds=round(now - t0, 3), bytes=st.total_wanted_done,
                 progress=round(st.progress, 4), peers=st.num_peers)
            ses.pause()
            sys.exit(3)
        ses.wait_for_alert(100)
    peers.tick(flush=True)
    if not done:
        emit("exit", reason=life.reason, uploaded=h.status().all_time_upload)
        ses.pause()
        sys.exit(4)
    emit("exit", reason=life.reason or "complete", uploaded=h.status().all_time_upload)
    ses.pause()


def cmd_dht_node(a):
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    t0 = time.monotonic()
    ses = make_session(a, "dht")
    port, pending_alerts = wait_listening(ses, life, socket_type=lt.socket_type_t.udp)
    while not ses.is_dht_running():
        if life.should_stop() or time.monotonic() - t0 > 10:
            fail("the DHT did not start")
        ses.wait_for_alert(100)
    emit("ready", port=port, ip=a.ip, bootstrap=a.dht_bootstrap, libtorrent=lt.__version__)
    dht = DhtWatch(ses, True, t0)
    while not life.should_stop():
        for al in pending_alerts + ses.pop_alerts():
            if not dht.on_alert(al) and isinstance(al, lt.dht_announce_alert):
                log("dht: announce of %s from %s:%d" % (al.info_hash, al.ip, al.port))
        pending_alerts = []
        for cmd in life.commands():
            log("unknown command:", cmd)
        dht.tick()
        ses.wait_for_alert(100)
    emit("exit", reason=life.reason)
    ses.pause()


def flush(ses, h, timeout=5.0):
    """Waits until libtorrent has handed every written block to the OS, so that a reader of
    the files right after "done" sees all of them."""
    h.flush_cache()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for al in ses.pop_alerts():
            if isinstance(al, lt.cache_flushed_alert):
                return
        ses.wait_for_alert(100)
    log("cache flush not confirmed after %.0f s" % timeout)


def add_network_args(ap):
    ap.add_argument("--ip", default="127.0.0.1", help="address to listen on and dial from (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="listen port (default 0: any free port, reported in 'ready')")
    ap.add_argument("--utp", action="store_true", help="enable uTP (off by default: TCP only)")
    ap.add_argument("--no-tcp", action="store_true",
                    help="no TCP connections in or out (uTP only with --utp; WebRTC only in lt21_peer.py)")
    ap.add_argument("--upload-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--encryption", choices=["enabled", "forced", "disabled"], default="enabled",
                    help="protocol encryption: enabled (libtorrent's default: either, both ways), "
                         "forced (RC4 only, both ways), disabled (plaintext only)")
    ap.add_argument("--download-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--connect", action="append", default=[], metavar="HOST:PORT",
                    help="peer to dial (repeatable; re-dialed until connected)")
    ap.add_argument("--tracker", action="append", default=[], metavar="URL",
                    help="announce here instead of the torrent's own trackers (repeatable)")
    add_dht_args(ap, "turn the DHT on, bootstrapped from these nodes only (repeatable; "
                     "settings for a loopback DHT; without it the DHT is off)")
    peerlib.add_common_args(ap)


def add_dht_args(ap, help):
    ap.add_argument("--dht-bootstrap", action="append", default=[], metavar="HOST:PORT", help=help)


def make_parser(description, add_args=None):
    """The command line of this driver; `add_args(subparser)` adds a derived driver's options
    to every role."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("seed", help="seed a torrent from existing data until stopped")
    s.add_argument("torrent")
    s.add_argument("data_dir")
    s.add_argument("--trust-data", action="store_true",
                   help="skip the initial hash check (libtorrent seed mode: verify lazily)")
    add_network_args(s)
    l = sub.add_parser("leech", help="download a torrent or magnet, then exit")
    l.add_argument("source", help=".torrent path or magnet: URI")
    l.add_argument("out_dir")
    l.add_argument("--timeout", type=float, default=300, help="give up (exit 3) after this many seconds")
    l.add_argument("--keep-seeding", action="store_true", help="keep running as a seed after 'done'")
    add_network_args(l)
    d = sub.add_parser("dht-node", help="a DHT node with no torrent (UDP on --ip/--port), until stopped")
    d.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=0,
                   help="UDP (and TCP) port (default 0: any free port, reported in 'ready')")
    add_dht_args(d, "bootstrap from this node (repeatable; default: none, the first node of a DHT)")
    peerlib.add_common_args(d)
    d.set_defaults(utp=False, no_tcp=False, upload_limit=0, download_limit=0, connect=[],
                   tracker=[], encryption="enabled")
    if add_args:
        add_args(s)
        add_args(l)
        add_args(d)
    return ap


def run(a):
    try:
        if a.role == "seed":
            cmd_seed(a)
        elif a.role == "dht-node":
            cmd_dht_node(a)
        else:
            cmd_leech(a)
    except (ValueError, RuntimeError) as e:
        fail(e)


# Set in the child that runs a leech (see `leech_surviving_a_crash`).
_LEECH_CHILD = "LT_PEER_LEECH_CHILD"


def leech_surviving_a_crash():
    """Runs this leech in a child process and starts it again, once, if libtorrent kills it
    with SIGSEGV. libtorrent 2.0.8 (Debian 12's) can crash as a download completes: a block
    write that fails once the torrent has become a seed cancels the block through a piece
    picker that no longer exists (fixed in 2.0.11: "fix race condition when cancelling
    requests after becoming a seed"). It struck 3 CI runs of ~100 downloads each. The second
    run resumes from the files the first wrote; a second crash is reported as the exit
    status. Returns the exit status to pass on."""
    env = dict(os.environ, **{_LEECH_CHILD: "1"})
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    for attempt in (1, 2):
        # stdin is inherited: the harness's commands and its EOF reach the child.
        child = subprocess.Popen(argv, env=env, preexec_fn=peerlib.die_with_parent)
        code = child.wait()
        if code != -signal.SIGSEGV or attempt == 2:
            return code if code >= 0 else 128 - code
        log("libtorrent crashed (SIGSEGV, fixed after 2.0.8); starting the leech again once")
        emit("crashed", signal="SIGSEGV")
    return 1


def main():
    a = make_parser(__doc__).parse_args()
    if a.role == "leech" and _LEECH_CHILD not in os.environ:
        sys.exit(leech_surviving_a_crash())
    run(a)


if __name__ == "__main__":
    main()
