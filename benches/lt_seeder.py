#!/usr/bin/python3
"""The benchmark's seeder: libtorrent over TCP, tuned so that it is not the bottleneck.

  lt_seeder.py --ip 127.0.0.2 --port 6881 --data-dir DIR A.torrent [B.torrent ...]

Every torrent's content is looked for in DIR and fully hash-checked before the seeder reports
`READY` (a lazily verified seed would hash pieces while the first leecher waits, which would
penalise whichever client happens to run first). Runs until SIGTERM/SIGINT or --max-seconds.
"""

import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt


def settings(ip, port):
    s = dict(lt.high_performance_seed())
    s.update({
        "listen_interfaces": "%s:%d" % (ip, port),
        # TCP only: libtorrent's uTP is slow on loopback and the leechers are compared over TCP.
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_ip_notifier": False,
        # Every leecher connects from 127.0.0.1, one after another.
        "allow_multiple_connections_per_ip": True,
        # Deep queues: a fast leecher keeps hundreds of requests in flight on loopback.
        "max_allowed_in_request_queue": 20000,
        "send_buffer_watermark": 32 << 20,
        "send_buffer_low_watermark": 4 << 20,
        "send_buffer_watermark_factor": 200,
        "max_queued_disk_bytes": 64 << 20,
        "aio_threads": 4,
        "hashing_threads": 2,
        "checking_mem_usage": 4096,
        # No rate limits anywhere, loopback included.
        "upload_rate_limit": 0, "download_rate_limit": 0,
        "alert_mask": lt.alert_category.error | lt.alert_category.status,
        "user_agent": "shoal-bench-seeder/libtorrent-" + lt.__version__,
    })
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrents", nargs="+")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--ip", default="127.0.0.2")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override one libtorrent setting (integers and true/false are converted)")
    a = ap.parse_args()

    pack = settings(a.ip, a.port)
    for item in a.set:
        name, _, value = item.partition("=")
        pack[name] = {"true": True, "false": False}.get(value, int(value) if value.lstrip("-").isdigit() else value)
    ses = lt.session(pack)
    handles = []
    for path in a.torrents:
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(path)
        p.save_path = os.path.abspath(a.data_dir)
        handles.append(ses.add_torrent(p))

    stopping = False

    def on_signal(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    ready = False
    while not stopping and time.monotonic() - t0 < a.max_seconds:
        for alert in ses.pop_alerts():
            if isinstance(alert, (lt.listen_failed_alert, lt.torrent_error_alert, lt.file_error_alert)):
                print("ALERT", type(alert).__name__, alert.message(), flush=True)
        if not ready and all(h.status().is_seeding for h in handles):
            ready = True
            print("READY", json.dumps({"port": ses.listen_port(), "check_s": round(time.monotonic() - t0, 2)}),
                  flush=True)
        time.sleep(0.1 if ready else 0.05)
    uploaded = sum(h.status().all_time_upload for h in handles)
    print("EXIT", json.dumps({"uploaded": uploaded, "ready": ready}), flush=True)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
