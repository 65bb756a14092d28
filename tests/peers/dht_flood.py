#!/usr/bin/python3
"""A flood of DHT queries at one node, each from one of many spoofed sources (issue 19).

  dht_flood.py --target IP:PORT [--sources N] [--rate Q] [--seconds S]

KRPC queries as libtorrent sends them (2-byte transaction ids), through a raw socket (root) so
that each comes from its own address in 127.64.0.0 upward: get_peers and find_node for random
targets, pings, announce_peer with forged tokens, and some garbage. The answers go to the
spoofed addresses, where nobody listens, as in a real spoofed flood.

Events on stdout (one JSON object a line):
  {"event":"flooding","target":"IP:PORT"}        the first query is on its way
  {"event":"done","sent":N,"seconds":S}          after --seconds (bounded: at most --seconds)

benches/dht_flood.py uses the same generator (`Flood`).
"""

import argparse
import json
import os
import random
import socket
import struct
import sys
import time


def bstr(b):
    return str(len(b)).encode() + b":" + b


def query(method, args, tid):
    """A KRPC query; `args` is a list of (key, bencoded value) besides `id`."""
    body = b"".join(bstr(k) + v for k, v in sorted([(b"id", bstr(os.urandom(20)))] + args))
    return b"d1:ad" + body + b"e1:q" + bstr(method) + b"1:t" + bstr(tid) + b"1:y1:qe"


def random_query(tid):
    r = random.random()
    if r < 0.4:
        return query(b"get_peers", [(b"info_hash", bstr(os.urandom(20)))], tid)
    if r < 0.7:
        return query(b"find_node", [(b"target", bstr(os.urandom(20)))], tid)
    if r < 0.9:
        return query(b"ping", [], tid)
    if r < 0.98:
        return query(b"announce_peer", [(b"implied_port", b"i0e"), (b"info_hash", bstr(os.urandom(20))),
                                        (b"port", b"i6881e"), (b"token", bstr(os.urandom(8)))], tid)
    return os.urandom(random.randint(1, 300))


def source_ip(i):
    """The i-th flood source: 127.64.0.0 upward (clear of the addresses tests give peers)."""
    n = (64 << 16) + i
    return "127.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def udp_packet(src, sport, dst, dport, payload):
    """IPv4 + UDP, the IP header's checksum and length left to the kernel (IP_HDRINCL), no UDP
    checksum (optional over IPv4)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, random.getrandbits(16), 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ip + udp + payload


class Flood:
    """Sends `rate` queries a second at (ip, port), cycling through `sources` addresses; call
    `pump()` often, it sends what is due."""

    def __init__(self, ip, port, sources, rate):
        self.ip, self.port, self.sources, self.rate = ip, port, sources, rate
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = 0
        self.started = time.monotonic()

    def pump(self):
        due = int((time.monotonic() - self.started) * self.rate)
        while self.sent < due:
            i = self.sent % self.sources
            payload = random_query(struct.pack("!H", self.sent & 0xFFFF))
            self.raw.sendto(udp_packet(source_ip(i), 1024 + (i % 60000), self.ip, self.port, payload),
                            (self.ip, 0))
            self.sent += 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="IP:PORT of the DHT node")
    p.add_argument("--sources", type=int, default=50000)
    p.add_argument("--rate", type=float, default=2000, help="queries a second")
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (a raw socket for the spoofed sources)")
    ip, port = args.target.rsplit(":", 1)
    flood = Flood(ip, int(port), args.sources, args.rate)
    print(json.dumps({"event": "flooding", "target": args.target}), flush=True)
    while time.monotonic() - flood.started < args.seconds:
        flood.pump()
        time.sleep(0.002)
    print(json.dumps({"event": "done", "sent": flood.sent,
                      "seconds": round(time.monotonic() - flood.started, 1)}), flush=True)


if __name__ == "__main__":
    main()
