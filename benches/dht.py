#!/usr/bin/python3
"""A bare magnet through a local Mainline DHT: Shoal beside libtorrent (issue 19).

A DHT of libtorrent nodes on loopback: one bootstrap node (127.0.0.20), one libtorrent seeder
(127.0.0.21) that announces a random file into it. Then, interleaved, `shoal download` and
libtorrent's leecher (tests/peers/lt_peer.py) each get only the bare magnet
(`magnet:?xt=urn:btih:HASH`) and the bootstrap node, and a fresh state (no saved DHT nodes):

- wall: from spawning the process to its exit with the file complete (checked by SHA-1);
- first peer: from spawning to the first peer the DHT named (Shoal: its debug line "peers
  from the DHT"; libtorrent: the driver's first `dht_reply` with peers).

The libtorrent leecher is the test driver's: it forces a DHT announce every 5 s while it has no
peers (libtorrent alone would wait for its own schedule), so it is, if anything, favoured.

    /usr/bin/python3 benches/dht.py [--size-mib 20] [--runs 3] [--shoal-bin PATH]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "tests", "peers")
PY = "/usr/bin/python3"


def shoal_bin(args):
    if args.shoal_bin:
        return os.path.abspath(args.shoal_bin)
    target = os.environ.get("CARGO_TARGET_DIR", "/var/cache/shoal-target")
    return os.path.join(target, "release", "shoal")


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def start_driver(args, name, log_dir):
    """An lt_peer.py process; returns (process, its ready event)."""
    log = open(os.path.join(log_dir, name + ".err"), "w")
    proc = subprocess.Popen([PY, os.path.join(PEERS, "lt_peer.py")] + args, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "ready":
            return proc, event
    proc.kill()
    sys.exit("%s did not get ready (see %s)" % (name, log.name))


def run_shoal(args, magnet, node, ip, out, state, log_dir, n):
    env = dict(os.environ, RUST_LOG="shoal::torrent_task=debug,shoal::dht=debug")
    env.pop("SHOAL_NO_DHT", None)
    err_path = os.path.join(log_dir, "shoal-%d.err" % n)
    cmd = [shoal_bin(args), "download", magnet, "-o", out, "--listen", "%s:0" % ip, "--json",
           "--no-webrtc", "--dht-bootstrap", node, "--dht-state", state]
    start_wall = datetime.now(timezone.utc)
    t0 = time.monotonic()
    with open(err_path, "w") as err:
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=300)
    wall = time.monotonic() - t0
    first_peer = None
    with open(err_path) as err:
        for line in err:
            if "peers from the DHT" in line:
                stamp = re.match(r"\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
                if stamp:
                    at = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=timezone.utc)
                    first_peer = (at - start_wall).total_seconds()
                break
    return done.returncode == 0, wall, first_peer


def run_lt(magnet, node, ip, out, log_dir, n):
    cmd = [PY, os.path.join(PEERS, "lt_peer.py"), "leech", magnet, out, "--ip", ip,
           "--dht-bootstrap", node, "--timeout", "240", "--no-stdin"]
    t0 = time.monotonic()
    first_peer = None
    with open(os.path.join(log_dir, "lt-%d.err" % n), "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "dht_reply" and event.get("peers", 0) > 0 and first_peer is None:
                first_peer = event.get("seconds")
        proc.wait(timeout=300)
    return proc.returncode == 0, time.monotonic() - t0, first_peer


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shoal-bin")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="shoal-bench-dht-")
    log_dir = os.path.join(ROOT, "target", "bench-dht", time.strftime("logs-%Y%m%d-%H%M%S"))
    os.makedirs(log_dir, exist_ok=True)
    procs = []
    try:
        data = os.path.join(work, "data")
        os.makedirs(data)
        payload = os.path.join(data, "payload.bin")
        subprocess.run([PY, os.path.join(PEERS, "make_payload.py"), "file", payload,
                        "--size", str(args.size_mib << 20)], check=True)
        made = subprocess.run([PY, os.path.join(PEERS, "make_torrent.py"), payload, "-o",
                               os.path.join(work, "t.torrent"), "--piece-kib", "256"],
                              check=True, capture_output=True, text=True)
        info_hash = json.loads(made.stdout)["info_hash"]
        want = sha1(payload)
        magnet = "magnet:?xt=urn:btih:" + info_hash

        node_proc, ready = start_driver(["dht-node", "--ip", "127.0.0.20", "--port", "0",
                                         "--max-seconds", "3600"], "dht-node", log_dir)
        procs.append(node_proc)
        node = "127.0.0.20:%d" % ready["port"]
        seed_proc, seed_ready = start_driver(["seed", os.path.join(work, "t.torrent"), data,
                                              "--ip", "127.0.0.21", "--port", "0",
                                              "--dht-bootstrap", node, "--max-seconds", "3600"],
                                             "lt-seed", log_dir)
        procs.append(seed_proc)
        print("DHT node %s, seeder %s (dht %s), %d MiB" % (node, seed_ready.get("port"),
                                                          seed_ready.get("dht"), args.size_mib))

        rows = {"shoal": [], "libtorrent": []}
        for n in range(args.runs):
            for who in ("shoal", "libtorrent"):
                out = os.path.join(work, "out-%s-%d" % (who, n))
                ip = "127.0.0.%d" % (60 + 2 * n + (who == "libtorrent"))
                if who == "shoal":
                    state = os.path.join(work, "dht-state-%d.json" % n)
                    ok, wall, first = run_shoal(args, magnet, node, ip, out, state, log_dir, n)
                else:
                    ok, wall, first = run_lt(magnet, node, ip, out, log_dir, n)
                got = os.path.join(out, "payload.bin")
                ok = ok and os.path.exists(got) and sha1(got) == want
                rows[who].append({"ok": ok, "wall": wall, "first_peer": first})
                print("  %-10s run %d: %s wall %.2f s, first DHT peer %s" % (
                    who, n + 1, "ok" if ok else "FAILED", wall,
                    "%.2f s" % first if first is not None else "-"))
                shutil.rmtree(out, ignore_errors=True)

        print("\n| leecher | ok/runs | first DHT peer s (median) | wall s (median) |")
        print("|---|---|---|---|")
        for who, runs in rows.items():
            oks = [r for r in runs if r["ok"]]
            fp, wall = median([r["first_peer"] for r in oks]), median([r["wall"] for r in oks])
            print("| %s | %d/%d | %s | %s |" % (who, len(oks), len(runs),
                                               "%.2f" % fp if fp is not None else "-",
                                               "%.2f" % wall if wall is not None else "-"))
        shoal_wall = median([r["wall"] for r in rows["shoal"] if r["ok"]])
        lt_wall = median([r["wall"] for r in rows["libtorrent"] if r["ok"]])
        if shoal_wall and lt_wall:
            print("\nShoal / libtorrent wall time: %.2f x" % (shoal_wall / lt_wall))
        print("logs in", log_dir)
    finally:
        for p in procs:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
