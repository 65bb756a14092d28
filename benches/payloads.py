"""Benchmark payloads: random files and their v1 .torrent files, made once and reused.

A payload is `random-<LABEL>.bin` (e.g. random-200M.bin) in the cache directory, with
`random-<LABEL>.torrent` next to it and `random-<LABEL>.json` recording its size, SHA-1 and the
torrent's info-hash. The JSON is written last, so a run that was interrupted while writing the
file or hashing it is redone rather than trusted.
"""

import hashlib
import json
import os
import re

import libtorrent as lt

CHUNK = 4 << 20
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class Payload:
    def __init__(self, label, path, torrent, size, sha1, info_hash, piece_length):
        self.label = label
        self.path = path
        self.torrent = torrent
        self.size = size
        self.sha1 = sha1
        self.info_hash = info_hash
        self.piece_length = piece_length

    @property
    def name(self):
        """The file name inside the torrent (and inside every download folder)."""
        return os.path.basename(self.path)

    @property
    def num_pieces(self):
        return (self.size + self.piece_length - 1) // self.piece_length

    @property
    def data_dir(self):
        """The folder a seeder is pointed at: it holds the file the torrent names."""
        return os.path.dirname(self.path)


def parse_size(label):
    """`200M`, `1G`, `512K`, `1048576`: binary units, so 200M is 200 MiB."""
    m = re.fullmatch(r"(\d+)([KMG]?)(?:IB|B)?", label.strip().upper())
    if not m or int(m.group(1)) == 0:
        raise ValueError("size %r: use a number with K, M or G, e.g. 200M or 1G" % label)
    return int(m.group(1)) * UNITS[m.group(2)]


def canonical_label(label):
    """`1GiB`, `1g`, `1024M` -> `1G`: one cache file per size, whatever the spelling."""
    size = parse_size(label)
    for unit in ("G", "M", "K"):
        if size % UNITS[unit] == 0:
            return "%d%s" % (size // UNITS[unit], unit)
    return str(size)


def file_sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _write_random(path, size):
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)


def _make_torrent(path, out, piece_kib):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    # 0 lets libtorrent choose, as a user creating a torrent with default settings would get.
    ct = lt.create_torrent(fs, piece_kib * 1024, flags=lt.create_torrent.v1_only)
    ct.set_creator("shoal benches/payloads.py (libtorrent %s)" % lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    with open(out + ".partial", "wb") as f:
        f.write(lt.bencode(ct.generate()))
    os.replace(out + ".partial", out)
    ti = lt.torrent_info(out)
    return str(ti.info_hashes().v1), ti.piece_length()


def ensure(cache_dir, label, piece_kib=0, log=print):
    """Return the Payload for `label`, creating the file and torrent if the cache lacks them."""
    size = parse_size(label)
    label = canonical_label(label)
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.join(cache_dir, "random-%s" % label)
    path, torrent, meta_path = stem + ".bin", stem + ".torrent", stem + ".json"
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta["size"] == size and meta["piece_kib"] == piece_kib and os.path.isfile(torrent)
                and os.path.getsize(path) == size):
            return Payload(label, path, torrent, size, meta["sha1"], meta["info_hash"], meta["piece_length"])
    except (OSError, ValueError, KeyError):
        pass
    if not (os.path.isfile(path) and os.path.getsize(path) == size):
        log("making %s (%d bytes of random data)" % (path, size))
        _write_random(path, size)
    log("hashing %s and making %s" % (path, torrent))
    sha1 = file_sha1(path)
    info_hash, piece_length = _make_torrent(path, torrent, piece_kib)
    meta = {"size": size, "sha1": sha1, "info_hash": info_hash, "piece_kib": piece_kib,
            "piece_length": piece_length}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return Payload(label, path, torrent, size, sha1, info_hash, piece_length)
