#!/usr/bin/python3
"""Memory per connected WebSocket peer: opens TLS WebSocket connections to a tracker, each
announcing once (its own peer id, one of 100 torrents, no offers) and then staying idle, and
reads the tracker's RSS after each count of connections.

  ws_idle.py --port PORT --pid SERVER_PID --counts 1000,10000 --out result.json

Bounded: at most the largest count of connections, 64 handshakes at a time, 20 s per
handshake, 300 s in all; everything is closed at the end. Only 127.0.0.1 is dialled.
"""

import argparse
import asyncio
import json
import os
import random
import ssl
import string
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import rss_kib  # noqa: E402

HANDSHAKES_AT_ONCE = 64
DEADLINE_SECS = 300


def frame(text):
    """A masked client text frame (RFC 6455)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def ident(rng):
    return "".join(rng.choice(string.ascii_letters) for _ in range(20))


async def open_one(port, ctx, rng, hashes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError("upgrade refused: %r" % head[:80])
    announce = {"action": "announce", "info_hash": rng.choice(hashes), "peer_id": ident(rng),
                "uploaded": 0, "downloaded": 0, "left": 1000, "event": "started", "numwant": 0,
                "offers": []}
    writer.write(frame(json.dumps(announce)))
    await writer.drain()
    # The announce answer: one unmasked text frame.
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    body = await reader.readexactly(n)
    if b0 & 0x0F != 1 or b"interval" not in body:
        raise RuntimeError("unexpected answer: %r" % body[:120])
    return reader, writer


async def main_async(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the benchmark's own self-signed certificate
    rng = random.Random(4)
    hashes = [ident(rng) for _ in range(100)]
    counts = sorted(int(c) for c in args.counts.split(","))
    conns, failures = [], 0
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    start = time.time()

    async def one():
        nonlocal failures
        async with gate:
            try:
                conns.append(await asyncio.wait_for(open_one(args.port, ctx, rng, hashes), 20))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, RuntimeError, ssl.SSLError) as e:
                failures += 1
                if failures <= 3:
                    print("connection failed: %r" % e, file=sys.stderr)

    await asyncio.sleep(1)
    base = rss_kib(args.pid)
    points = []
    for count in counts:
        missing = count - len(conns)
        await asyncio.gather(*(one() for _ in range(missing)))
        if time.time() - start > DEADLINE_SECS:
            break
        # Let the server settle (and a garbage collector run) before reading its RSS.
        await asyncio.sleep(3)
        rss = rss_kib(args.pid)
        n = len(conns)
        points.append({"connections": n, "rss_kib": rss, "growth_kib": rss - base,
                       "bytes_per_connection": round((rss - base) * 1024 / max(n, 1))})
        print("%d connections: server RSS %d KiB (+%d KiB, %d B each), %d failed" % (
            n, rss, rss - base, points[-1]["bytes_per_connection"], failures), flush=True)
    for _, writer in conns:
        writer.close()
    result = {"base_rss_kib": base, "points": points, "failed": failures}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the tracker's process id (RSS is read from /proc)")
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--out", required=True)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
