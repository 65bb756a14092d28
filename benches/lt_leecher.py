#!/usr/bin/python3
"""The libtorrent leecher of the benchmark: download one torrent from one peer, then exit.

  lt_leecher.py TORRENT OUT_DIR --peer 127.0.0.2:6881 [--timeout 300]

Settings are libtorrent's defaults, as a user of a libtorrent-based client gets them, except
what the benchmark fixes for every client: TCP only, no DHT/LSD/UPnP/NAT-PMP. Exit code 0 once
every piece is downloaded and verified (torrent_finished_alert), 3 on timeout, 2 on an error.
"""

import argparse
import os
import sys
import time

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("out_dir")
    ap.add_argument("--peer", required=True, help="HOST:PORT of the seeder")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--utp", action="store_true", help="uTP only (TCP off both ways)")
    ap.add_argument("--rc4", action="store_true",
                    help="protocol encryption required, RC4 on the whole stream (both ways)")
    a = ap.parse_args()
    # libtorrent's enums: enc_policy forced = 0, enabled = 1; enc_level rc4 = 2, both = 3.
    encryption = ({"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2} if a.rc4
                  else {})

    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_incoming_utp": a.utp, "enable_outgoing_utp": a.utp,
        "enable_incoming_tcp": not a.utp, "enable_outgoing_tcp": not a.utp,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_ip_notifier": False,
        "alert_mask": lt.alert_category.error | lt.alert_category.status,
        "user_agent": "shoal-bench-leecher/libtorrent-" + lt.__version__,
        **encryption,
    })
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(a.torrent)
    p.save_path = os.path.abspath(a.out_dir)
    h = ses.add_torrent(p)
    host, port = a.peer.rsplit(":", 1)
    h.connect_peer((host, int(port)))

    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        ses.wait_for_alert(50)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.torrent_finished_alert):
                # Let the disk threads finish and close the files before the process exits.
                ses.pause()
                del h
                del ses
                return 0
            if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                print("error:", alert.message(), file=sys.stderr, flush=True)
                return 2
    print("timeout after %.0f s" % a.timeout, file=sys.stderr, flush=True)
    return 3


if __name__ == "__main__":
    sys.exit(main())
