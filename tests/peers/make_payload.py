#!/usr/bin/python3
"""Deterministic test payloads.

  make_payload.py file OUT_FILE --size BYTES [--seed N]
      one file of pseudo-random bytes (the same seed and size give the same bytes)

  make_payload.py tree OUT_DIR [--size BYTES] [--piece-kib K] [--tail BYTES] [--seed N]
      a multi-file torrent's worth of content, laid out to hit the edge cases:
        OUT_DIR/alpha.bin                ~40% of --size, ends mid-piece
        OUT_DIR/empty.txt                zero-length file
        OUT_DIR/nested/beta.bin          ~20%, odd length
        OUT_DIR/nested/deeper/gamma.bin  ~35%
        OUT_DIR/tail.bin                 sized so the torrent's last piece is --tail bytes long
      (crates/shoal-testkit's payload_tree() builds the same layout, with its own random bytes)

Prints one JSON line: {"path": ..., "total_size": ..., "files": [{"path", "size"}, ...]}.
"""

import argparse
import json
import os
import random

CHUNK = 1 << 20


def write_random(path, size, seed):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rng = random.Random("%s:%d" % (seed, size))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, CHUNK)
            f.write(rng.randbytes(n))
            left -= n


def tree_layout(total, piece, tail):
    """File sizes for the tree (relative path, size), in creation order."""
    alpha = total * 40 // 100 + 1000
    beta = total * 20 // 100 + 7
    gamma = total * 35 // 100
    base = alpha + beta + gamma
    # The last piece of the torrent is (total size mod piece size) bytes long: pick tail.bin's
    # size to make that `tail` (1..piece).
    tail_file = (tail - base) % piece
    if tail_file == 0:
        tail_file = piece
    return [("alpha.bin", alpha), ("empty.txt", 0), ("nested/beta.bin", beta),
            ("nested/deeper/gamma.bin", gamma), ("tail.bin", tail_file)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    f = sub.add_parser("file", help="one random file")
    f.add_argument("out")
    f.add_argument("--size", type=int, required=True, help="bytes")
    f.add_argument("--seed", default="1")
    t = sub.add_parser("tree", help="nested multi-file tree with a zero-length file and a short last piece")
    t.add_argument("out")
    t.add_argument("--size", type=int, default=4 << 20, help="approximate total bytes (default 4 MiB)")
    t.add_argument("--piece-kib", type=int, default=64, help="piece size the tail is computed for (default 64)")
    t.add_argument("--tail", type=int, default=5, help="length of the torrent's last piece (default 5)")
    t.add_argument("--seed", default="1")
    a = ap.parse_args()

    if a.kind == "file":
        if a.size < 0:
            ap.error("--size must be >= 0")
        write_random(a.out, a.size, a.seed)
        files = [{"path": os.path.basename(a.out), "size": a.size}]
    else:
        piece = a.piece_kib * 1024
        if a.size < 0 or piece <= 0 or not 1 <= a.tail <= piece:
            ap.error("need --size >= 0, --piece-kib > 0 and 1 <= --tail <= piece size")
        files = []
        for rel, size in tree_layout(a.size, piece, a.tail):
            write_random(os.path.join(a.out, rel), size, "%s/%s" % (a.seed, rel))
            files.append({"path": rel, "size": size})
    print(json.dumps({"path": os.path.abspath(a.out), "total_size": sum(x["size"] for x in files),
                      "files": files}))


if __name__ == "__main__":
    main()
