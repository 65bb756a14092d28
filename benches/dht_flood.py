#!/usr/bin/python3
"""A DHT node under a flood of queries from many sources: Shoal's beside libtorrent's (issue 19).

Each node runs alone on loopback and answers queries from the start: Shoal's is
`crates/shoal/examples/dht_node.rs` (the session's `shoal::dht`: the vendored `mainline`, the
per-source budget, the bounded store), libtorrent's is `tests/peers/lt_peer.py dht-node`
(libtorrent 2.0, Debian). A raw socket (root) then sends KRPC queries as libtorrent sends them
(2-byte transaction ids) at a fixed rate, each from one of N distinct source addresses in
127.0.0.0/8 (spoofed: the answers go nowhere, as in a real spoofed flood): get_peers and
find_node for random targets, pings, announce_peer with forged tokens, and some garbage. Beside
the flood, one well-behaved client pings twice a second from its own address.

Reported per node, over the flood: the process's CPU seconds (user + system, /proc) per 1,000
queries sent; how many answers it sent (UDP datagrams out of the namespace, /proc/net/snmp,
less the client's pings: run nothing else meanwhile); its resident memory before the flood
and at its peak (sampled every second); and how many of the well-behaved client's pings were
answered.

    sudo /usr/bin/python3 benches/dht_flood.py [--sources 100000] [--seconds 600] [--rate 1000]

Builds nothing: run `cargo build --release -p shoal --example dht_node` first (with
scripts/build-env.sh's settings; or pass --shoal-node PATH).
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "peers"))
from dht_flood import Flood, query  # noqa: E402  (the test drivers' generator)
PY = "/usr/bin/python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def drain(sock):
    """How many datagrams wait on a non-blocking socket (read and dropped)."""
    n = 0
    try:
        while True:
            sock.recv(2048)
            n += 1
    except BlockingIOError:
        return n


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def udp_out_datagrams():
    """UDP datagrams this network namespace has sent (/proc/net/snmp): during a run, the node's
    answers plus the client's pings (the flood goes out through a raw socket, not counted)."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("OutDatagrams")])


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_node(kind, args, ip):
    if kind == "shoal":
        argv = [args.shoal_node, "%s:0" % ip]
    else:
        argv = [PY, os.path.join(ROOT, "tests", "peers", "lt_peer.py"), "dht-node", "--ip", ip, "--port", "0",
                "--max-seconds", str(int(args.seconds) + 120)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("event") == "ready":
            port = int(event["addr"].rsplit(":", 1)[1]) if "addr" in event else int(event["port"])
            return proc, port
    proc.kill()
    sys.exit("%s node did not start" % kind)


def flood(args, kind, ip):
    proc, port = start_node(kind, args, ip)
    # the node the process runs: libtorrent's driver is python with libtorrent's threads in it
    pid = proc.pid
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.99", 0))
    client.setblocking(False)
    time.sleep(3)
    rss_before = proc_rss_kib(pid)
    rss_peak = rss_before
    cpu_before = proc_cpu_seconds(pid)
    udp_before = udp_out_datagrams()
    probes = answered = 0
    flood = Flood(ip, port, args.sources, args.rate)
    started = flood.started
    next_probe = started
    next_sample = started + 1
    while True:
        now = time.monotonic()
        if now - started >= args.seconds:
            break
        flood.pump()
        if now >= next_probe:
            probes += 1
            client.sendto(query(b"ping", [], struct.pack("!H", probes & 0xFFFF)), (ip, port))
            next_probe += 0.5
        answered += drain(client)
        if now >= next_sample:
            rss_peak = max(rss_peak, proc_rss_kib(pid))
            next_sample += 1
        time.sleep(0.001)
    sent = flood.sent
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    answered += drain(client)
    cpu = proc_cpu_seconds(pid) - cpu_before
    answers = udp_out_datagrams() - udp_before - probes
    rss_peak = max(rss_peak, proc_rss_kib(pid))
    proc.stdin.close()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    return {
        "node": kind,
        "queries": sent,
        "sources": min(sent, args.sources),
        "seconds": round(elapsed, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_1000_queries": round(1000 * cpu / max(sent, 1) * 1000, 1),
        "answers": answers,
        "rss_before_kib": rss_before,
        "rss_peak_kib": rss_peak,
        "rss_growth_kib": rss_peak - rss_before,
        "probe_pings_answered": "%d/%d" % (answered, probes),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=100000)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--rate", type=float, default=1000, help="queries a second")
    target = os.environ.get("CARGO_TARGET_DIR", "/var/cache/shoal-target")
    p.add_argument("--shoal-node", default=os.path.join(target, "release", "examples", "dht_node"))
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (a raw socket for the spoofed sources)")
    if not os.path.exists(args.shoal_node):
        sys.exit("no %s: cargo build --release -p shoal --example dht_node" % args.shoal_node)
    results = [flood(args, "shoal", "127.0.0.30"), flood(args, "libtorrent", "127.0.0.31")]
    shoal, lt = results
    report = {
        "bench": "dht_flood",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "rate": args.rate,
        "results": results,
        "cpu_ratio_shoal_to_libtorrent": round(shoal["cpu_s"] / lt["cpu_s"], 2) if lt["cpu_s"] else None,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
