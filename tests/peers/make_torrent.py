#!/usr/bin/python3
"""Create a v1 .torrent with libtorrent (Debian python3-libtorrent).

  make_torrent.py PATH -o OUT.torrent [--piece-kib K] [--tracker URL]... [--web-seed URL]...
                  [--private] [--comment TEXT]

PATH is a file (single-file torrent) or a folder (multi-file torrent named after the folder).
Prints one JSON line: {"torrent", "name", "info_hash", "magnet", "piece_size", "num_pieces",
"total_size", "files": [{"path", "size"}]} (file paths relative to the torrent's root, "/" separated).
"""

import argparse
import json
import os
import sys

import libtorrent as lt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--piece-kib", type=int, default=64, help="piece size in KiB, a power of two >= 16 (default 64)")
    ap.add_argument("--tracker", action="append", default=[], help="announce URL (repeatable; one tier each)")
    ap.add_argument("--web-seed", action="append", default=[], help="BEP 19 web seed URL (repeatable)")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--comment", default=None)
    a = ap.parse_args()

    piece = a.piece_kib * 1024
    if a.piece_kib < 16 or piece & (piece - 1):
        ap.error("--piece-kib must be a power of two >= 16")
    path = os.path.abspath(a.path)
    if not os.path.exists(path):
        ap.error("no such file or folder: %s" % path)

    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        ap.error("nothing to share under %s" % path)
    # v1 only: no v2 hashes, and no pad files (those would appear as extra files to v1 clients)
    ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)
    for tier, url in enumerate(a.tracker):
        ct.add_tracker(url, tier)
    for url in a.web_seed:
        ct.add_url_seed(url)
    if a.private:
        ct.set_priv(True)
    if a.comment:
        ct.set_comment(a.comment)
    ct.set_creator("shoal tests/peers/make_torrent.py (libtorrent %s)" % lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    data = lt.bencode(ct.generate())
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(data)

    ti = lt.torrent_info(a.out)
    files = ti.files()
    entries = []
    for i in range(files.num_files()):
        rel = files.file_path(i)
        # multi-file paths start with the torrent's name: report them relative to it
        parts = rel.split(os.sep)
        if files.num_files() > 1 or os.path.isdir(path):
            parts = parts[1:]
        entries.append({"path": "/".join(parts), "size": files.file_size(i)})
    print(json.dumps({
        "torrent": os.path.abspath(a.out), "name": ti.name(), "info_hash": str(ti.info_hashes().v1),
        "magnet": lt.make_magnet_uri(ti), "piece_size": ti.piece_length(), "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(), "files": entries,
    }))


if __name__ == "__main__":
    sys.exit(main())
