"""Command lines of the benchmarked clients, leeching and (for the X -> X pairs) seeding.

Every client gets the same conditions: TCP only, no DHT, no local peer discovery, no UPnP, no
peer exchange, one seeder given up front (aria2c, which cannot be handed a peer, gets it from
the harness's static tracker), exit as soon as the download is complete and verified.
"""

import os
import shutil

from procs import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's python3-libtorrent lives in the system interpreter

LEECHERS = ("shoal", "rqbit", "libtorrent", "aria2")
# Shoal with other flags than its defaults (TCP, protocol encryption preferred), to compare
# transports and encryption on the same setup.
SHOAL_VARIANTS = {
    "shoal-tcp": ["--no-utp"],
    "shoal-plain": ["--encryption", "disable"],
    "shoal-rc4": ["--encryption", "require"],
}
# libtorrent's leecher the same way, as the reference for what a variant costs.
LT_VARIANTS = {
    "libtorrent-rc4": ["--rc4"],
}
KNOWN = LEECHERS + tuple(SHOAL_VARIANTS) + tuple(LT_VARIANTS)
SELF_SEEDERS = ("shoal", "rqbit") + tuple(SHOAL_VARIANTS)  # clients also benchmarked as X -> X


def find_shoal(repo_root, explicit=None):
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(repo_root, "target")
    return os.path.join(target, "release", "shoal")


def find_rqbit(explicit=None):
    if explicit:
        return explicit
    return shutil.which("rqbit") or os.path.expanduser("~/.cargo/bin/rqbit")


def binary_for(client, paths):
    """The executable a client needs, or None when it needs none we look up (libtorrent)."""
    if client in SHOAL_VARIANTS:
        return paths["shoal"]
    if client in LT_VARIANTS:
        return PYTHON
    return {"shoal": paths["shoal"], "rqbit": paths["rqbit"], "aria2": shutil.which("aria2c") or "aria2c",
            "libtorrent": PYTHON}[client]


def _rqbit_globals(listen_ip, listen_port=None):
    args = ["--disable-dht", "--disable-dht-persistence", "--disable-lsd", "--disable-upnp-port-forward",
            "--listen-ip", listen_ip, "-v", "warn"]
    if listen_port is not None:
        args += ["--listen-port", str(listen_port)]
    return args


def leech_argv(client, paths, torrent, out_dir, peer, tracker_url, limit_s, utp=False):
    """argv that downloads `torrent` into `out_dir` from `peer` ("HOST:PORT") and then exits.
    `utp`: the libtorrent leecher speaks uTP only (Shoal picks uTP by itself when the peer
    answers on it)."""
    if client == "shoal" or client in SHOAL_VARIANTS:
        return ([paths["shoal"], "download", torrent, "-o", out_dir, "--peer", peer, "--listen", "127.0.0.1:0"]
                + SHOAL_VARIANTS.get(client, []))
    if client == "rqbit":
        return ([paths["rqbit"]] + _rqbit_globals("127.0.0.1")
                + ["download", torrent, "-o", out_dir, "--exit-on-finish", "--initial-peers", peer,
                   "--disable-http-api"])
    if client == "libtorrent" or client in LT_VARIANTS:
        return ([PYTHON, os.path.join(HERE, "lt_leecher.py"), torrent, out_dir, "--peer", peer,
                 "--timeout", str(int(limit_s))] + (["--utp"] if utp else [])
                + LT_VARIANTS.get(client, []))
    if client == "aria2":
        return [binary_for("aria2", paths), "--dir=" + out_dir, "--bt-tracker=" + tracker_url,
                "--seed-time=0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--disable-ipv6=true", "--file-allocation=none",
                "--check-integrity=false", "--bt-stop-timeout=%d" % int(limit_s),
                "--listen-port=%d" % free_port(), "--console-log-level=warn", "--summary-interval=0",
                "--auto-save-interval=0", torrent]
    raise ValueError("unknown client %r" % client)


def seed_argv(client, paths, torrent, data_dir, ip, port):
    """argv of a long-running seeder of `torrent` whose content is in `data_dir`."""
    if client == "shoal" or client in SHOAL_VARIANTS:
        return ([paths["shoal"], "seed", torrent, "-o", data_dir, "--listen", "%s:%d" % (ip, port)]
                + SHOAL_VARIANTS.get(client, []))
    if client == "rqbit":
        # `rqbit download` of complete data checks it and keeps seeding until stopped;
        # --overwrite lets it open the existing file (it only writes pieces that fail the check).
        return ([paths["rqbit"]] + _rqbit_globals(ip, port)
                + ["download", torrent, "-o", data_dir, "--overwrite", "--disable-http-api"])
    raise ValueError("%r is not benchmarked as a seeder" % client)

