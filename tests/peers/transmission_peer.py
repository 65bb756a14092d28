#!/usr/bin/python3
"""transmission-cli (Debian transmission-cli 3.00) as a reference peer on loopback.

  transmission_peer.py seed  TORRENT DATA_DIR  [options]   verify the data, then seed until stopped
  transmission_peer.py leech SOURCE  OUT_DIR   [options]   download, then exit (or --keep-seeding)

SOURCE is a .torrent file or a magnet: URI. Same event contract as lt_peer.py (see peerlib.py):
"ready" (with "port"), "progress", "done", "timeout", "error", "exit".

Transmission quirks handled here, or left to the caller:
* It never dials peers in 127.0.0.0/8 (tracker or not): on loopback the OTHER side must connect
  to it. "ready" reports the port; dial it from an address other than --ip, because
* it keys peers by IP address alone: give it its own 127.x address (--ip, default 127.0.0.1 is
  only right if nobody else uses that address) and let each peer that dials it come from another.
* -M (no UPnP/NAT-PMP) always; DHT, LPD, PEX and RPC off via a throw-away settings.json.
* Its status line is only written when stdout is unbuffered: it runs under `stdbuf -o0`.
* Completion is reported through its -f "torrent done" script.
* --tracker rewrites a copy of the .torrent (or the magnet's tr= parameters); the info dict and
  so the info hash are untouched.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

import peerlib
from peerlib import emit, fail, log

PROGRESS = re.compile(r"Progress: ([\d.]+)%")
VERIFYING = re.compile(r"Verifying local files")
SEEDING = re.compile(r"^Seeding")
ERROR = re.compile(r"^Error: (.*)|(Couldn't bind port .*)")


class StatusWatcher:
    """Reads transmission-cli's carriage-return status lines; forwards its log to stderr."""

    def __init__(self, stream):
        self.status = ""
        self.progress = 0.0
        self.seeding = False
        self.error = None
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream):
        buf = b""
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for raw in parts:
                self._line(raw.decode("utf-8", "replace").strip())

    def _line(self, line):
        if not line:
            return
        if line != self.status:
            sys.stderr.write("transmission: " + line + "\n")
            sys.stderr.flush()
        self.status = line
        m = PROGRESS.search(line)
        if m:
            self.progress = float(m.group(1)) / 100.0
        if SEEDING.search(line):
            self.seeding = True
            self.progress = 1.0
        m = ERROR.search(line)
        if m and "::1" not in line:  # an IPv6 loopback we do not use may be missing or taken
            self.error = m.group(1) or m.group(2)


def with_trackers(source, trackers, workdir):
    """The source, announcing only to `trackers` (a rewritten copy for a .torrent file)."""
    if not trackers:
        return source
    if source.startswith("magnet:"):
        head, _, query = source.partition("?")
        params = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != "tr"]
        params += [("tr", t) for t in trackers]
        return head + "?" + urllib.parse.urlencode(params, safe=":/")
    import libtorrent as lt  # only for bdecode/bencode; the info dict is kept as decoded
    with open(source, "rb") as f:
        meta = lt.bdecode(f.read())
    if not isinstance(meta, dict) or b"info" not in meta:
        fail("not a torrent file: %s" % source)
    meta[b"announce"] = trackers[0].encode()
    meta[b"announce-list"] = [[t.encode()] for t in trackers]
    out = os.path.join(workdir, "with-trackers.torrent")
    with open(out, "wb") as f:
        f.write(lt.bencode(meta))
    return out


def settings(a, directory, keep_seeding):
    kb = lambda bytes_per_s: max(1, bytes_per_s // 1000)  # transmission-cli counts 1 kB = 1000 B
    return {
        "bind-address-ipv4": a.ip,
        "bind-address-ipv6": "::1",
        "peer-port": a.port,
        "peer-port-random-on-start": False,
        "port-forwarding-enabled": False,
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": a.utp,
        # Protocol encryption: 0 tolerated (plaintext first), 1 preferred (Transmission's
        # default), 2 required.
        "encryption": {"tolerated": 0, "preferred": 1, "required": 2}[a.encryption],
        "rpc-enabled": False,
        "ratio-limit-enabled": False,
        "idle-seeding-limit-enabled": False,
        "download-dir": os.path.abspath(directory),
        "incomplete-dir-enabled": False,
        "rename-partial-files": False,
        "start-added-torrents": True,
        "speed-limit-up-enabled": bool(a.upload_limit),
        "speed-limit-up": kb(a.upload_limit),
        "speed-limit-down-enabled": bool(a.download_limit),
        "speed-limit-down": kb(a.download_limit),
        # a seed that keeps running after "done" must have its blocks on disk already
        "cache-size-mb": 0 if keep_seeding else 4,
        "message-level": 2,
    }


def run(a, seeding):
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    directory = a.data_dir if seeding else a.out_dir
    source = a.torrent if seeding else a.source
    if not source.startswith("magnet:") and not os.path.isfile(source):
        fail("no such torrent file: %s" % source)
    os.makedirs(directory, exist_ok=True)
    if a.port == 0:
        a.port = peerlib.free_port(a.ip)
    work = tempfile.mkdtemp(prefix="shoal-transmission-")
    try:
        return supervise(a, life, seeding, directory, with_trackers(source, a.tracker, work), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def supervise(a, life, seeding, directory, source, work):
    keep_seeding = seeding or a.keep_seeding
    config = os.path.join(work, "config")
    os.makedirs(config)
    with open(os.path.join(config, "settings.json"), "w") as f:
        json.dump(settings(a, directory, keep_seeding), f, indent=1)
    marker = os.path.join(work, "done")
    script = os.path.join(work, "on-done.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\ntouch '%s'\n" % marker)
    os.chmod(script, 0o755)
    cmd = ["stdbuf", "-o0", "transmission-cli", "-M", "-g", config, "-w", os.path.abspath(directory),
           "-p", str(a.port), "-f", script, source]
    proc = peerlib.spawn(cmd, stdout=peerlib.subprocess.PIPE, stderr=peerlib.subprocess.STDOUT)
    try:
        return watch(a, life, seeding, directory, proc, marker)
    finally:
        peerlib.stop_process(proc, grace=15)


def watch(a, life, seeding, directory, proc, marker):
    watcher = StatusWatcher(proc.stdout)
    t0 = time.monotonic()
    ready = False
    done = False
    last_progress = 0.0
    exit_code = 0
    while not life.should_stop():
        for cmd in life.commands():
            log("transmission driver: unsupported command", cmd)
        now = time.monotonic()
        rc = proc.poll()
        if watcher.error:
            emit("error", message="transmission: " + watcher.error)
            exit_code = 2
            break
        if rc is not None:
            emit("error", message="transmission-cli exited with status %d (its log is on stderr)" % rc)
            exit_code = 2
            break
        listening = peerlib.tcp_listening(a.port, a.ip)
        if not ready and listening and (not seeding or watcher.seeding):
            emit("ready", port=a.port, ip=a.ip)
            ready = True
        if seeding and not ready and now - t0 > 5 and watcher.status.startswith("Progress"):
            fail("data under %s does not match the torrent (transmission: %s)" % (directory, watcher.status))
        if not seeding and not done and os.path.exists(marker):
            done = True
            seconds = now - t0
            if not a.keep_seeding:
                # a clean shutdown writes out transmission's block cache before files are read
                peerlib.stop_process(proc, grace=15)
            emit("done", seconds=round(seconds, 3), bytes=peerlib.dir_bytes(directory))
            if not a.keep_seeding:
                break
        if not seeding and not done and ready:
            if now - last_progress >= 1.0:
                last_progress = now
                emit("progress", progress=round(watcher.progress, 4), bytes=peerlib.dir_bytes(directory))
            if now - t0 > a.timeout:
                emit("timeout", seconds=round(now - t0, 3), progress=round(watcher.progress, 4))
                life.reason = "timeout"
                exit_code = 3
                break
        time.sleep(0.05)
    if exit_code == 0 and not seeding and not done:
        exit_code = 4  # stopped before the download completed
    emit("exit", reason=life.reason or ("complete" if done else "transmission-cli exited"), code=exit_code)
    return exit_code


def add_network_args(ap):
    ap.add_argument("--ip", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; peers must dial it from another address)")
    ap.add_argument("--port", type=int, default=0, help="listen port (default 0: pick a free one, reported in 'ready')")
    ap.add_argument("--utp", action="store_true", help="enable uTP (off by default: TCP only)")
    ap.add_argument("--upload-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--encryption", choices=["tolerated", "preferred", "required"], default="preferred",
                    help="protocol encryption (default preferred, Transmission's own default)")
    ap.add_argument("--download-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--tracker", action="append", default=[], metavar="URL",
                    help="announce here instead of the torrent's own trackers (repeatable)")
    peerlib.add_common_args(ap)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("seed", help="verify existing data and seed it until stopped")
    s.add_argument("torrent")
    s.add_argument("data_dir")
    add_network_args(s)
    l = sub.add_parser("leech", help="download a torrent or magnet, then exit")
    l.add_argument("source", help=".torrent path or magnet: URI")
    l.add_argument("out_dir")
    l.add_argument("--timeout", type=float, default=300, help="give up (exit 3) after this many seconds")
    l.add_argument("--keep-seeding", action="store_true", help="keep running as a seed after 'done'")
    add_network_args(l)
    a = ap.parse_args()
    if a.role == "seed":
        a.keep_seeding = False
    sys.exit(run(a, seeding=a.role == "seed"))


if __name__ == "__main__":
    main()
