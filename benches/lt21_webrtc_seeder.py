"""A WebTorrent (WebRTC) seeder made of PyPI libtorrent 2.1, for benches/webrtc.py.

  VENV/bin/python benches/lt21_webrtc_seeder.py FILE --announce ws://HOST:PORT
      [--piece-kib 256] [--port P] [--max-seconds 900]

Makes a v1 torrent of FILE (WebTorrent speaks v1 only) with the one ws:// tracker, seeds it with
libtorrent's default settings (no DHT, LSD, UPnP, NAT-PMP; no STUN server, so host candidates
only) and prints one JSON line once the tracker answered an announce:
  {"event": "ready", "magnet": ..., "info_hash": ..., "libtorrent": "2.1.x"}
then a {"event": "stats", ...} line every 5 s. Stops on SIGTERM/SIGINT, end of stdin or
--max-seconds. Debian's python3-libtorrent (2.0) has no WebTorrent support: this needs the
PyPI wheel (`pip install libtorrent==2.1.1` in a venv).
"""

import argparse
import json
import os
import select
import signal
import sys
import time

import libtorrent as lt


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--announce", required=True)
    ap.add_argument("--piece-kib", type=int, default=256)
    ap.add_argument("--port", type=int, default=0, help="TCP listen port on 127.0.0.1 (0: libtorrent's pick)")
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()

    path = os.path.abspath(a.file)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, a.piece_kib * 1024, flags=lt.create_torrent.v1_only)
    ct.add_tracker(a.announce, 0)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    ti = lt.torrent_info(lt.bencode(ct.generate()))

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % a.port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "webtorrent_stun_server": "",
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert_category.error | lt.alert_category.status | lt.alert_category.tracker
        | lt.alert_category.peer,
    })
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = os.path.dirname(path)
    p.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(p)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stop.append("SIGINT"))
    t0 = time.monotonic()
    ready = False
    last_stats = t0
    while not stop and time.monotonic() - t0 < a.max_seconds:
        for al in ses.pop_alerts():
            if isinstance(al, lt.tracker_reply_alert) and not ready:
                ready = True
                emit("ready", magnet=lt.make_magnet_uri(ti), info_hash=str(ti.info_hashes().v1),
                     libtorrent=lt.__version__, seconds=round(time.monotonic() - t0, 3))
            if isinstance(al, (lt.tracker_error_alert, lt.peer_connect_alert, lt.peer_disconnected_alert,
                               lt.incoming_connection_alert, lt.peer_error_alert)):
                print("alert", type(al).__name__, al.message(), file=sys.stderr, flush=True)
        if time.monotonic() - last_stats >= 5:
            last_stats = time.monotonic()
            st = h.status()
            emit("stats", peers=st.num_peers, uploaded=st.all_time_upload)
        r, _, _ = select.select([sys.stdin], [], [], 0.1)
        if r and not sys.stdin.buffer.read1(4096):
            stop.append("stdin closed")
    emit("exit", reason=stop[0] if stop else "max-seconds")


if __name__ == "__main__":
    main()
