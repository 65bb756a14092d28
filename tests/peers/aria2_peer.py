#!/usr/bin/python3
"""aria2c (Debian aria2 1.36) as a reference peer on loopback.

  aria2_peer.py seed  TORRENT DATA_DIR  [options]   verify the data, then seed until stopped
  aria2_peer.py leech SOURCE  OUT_DIR   [options]   download, then exit (or --keep-seeding)

SOURCE is a .torrent file or a magnet: URI. Same event contract as lt_peer.py (see peerlib.py):
"ready" (with "port"), "progress" (bytes on disk, approximate), "done", "timeout", "error", "exit".

aria2 quirks handled here:
* It cannot be told to dial a peer. A leecher finds its seeders through a tracker (--tracker), or
  the other side dials it: "ready" reports the port it listens on.
* --interface binds its listen socket and its outgoing connections to --ip, so that it has an
  address of its own on 127.0.0.0/8; --bt-external-ip makes it announce that address.
* DHT, DHT6, LPD and peer exchange are off; no config file is read (--no-conf);
  --stop-with-process ties it to this driver.
* aria2 speaks UDP trackers (BEP 15) only over its DHT socket ("udp is not supported yet"
  otherwise): with a udp:// --tracker, DHT is switched on with no entry point and a routing
  table file of its own, so it contacts no DHT node and the socket serves the tracker only.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time

import peerlib
from peerlib import emit, fail, log

LISTENING = re.compile(r"listening on TCP port (\d+)")
COMPLETE = re.compile(r"Download complete: (.*)$")


class LogWatcher:
    """Forwards aria2's log to stderr and remembers the lines the driver waits for."""

    def __init__(self, stream):
        self.listening_port = None
        self.completed = []
        self.lines = 0
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.lines += 1
            sys.stderr.write("aria2: " + line + "\n")
            m = LISTENING.search(line)
            if m:
                self.listening_port = int(m.group(1))
            m = COMPLETE.search(line)
            # a magnet first "completes" its metadata pseudo-download
            if m and "[METADATA]" not in m.group(1):
                self.completed.append(m.group(1))
        sys.stderr.flush()


def aria2_command(a, directory, seeding, work):
    udp_tracker = any(t.startswith("udp://") for t in a.tracker)
    cmd = [
        "aria2c", "--no-conf=true", "--dir=" + os.path.abspath(directory),
        "--listen-port=%d" % a.port, "--interface=" + a.ip, "--bt-external-ip=" + a.ip,
        "--enable-dht=%s" % ("true" if udp_tracker else "false"),
        "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--disable-ipv6=true",
        "--file-allocation=none", "--auto-file-renaming=false", "--allow-overwrite=true",
        "--summary-interval=0", "--show-console-readout=false", "--enable-color=false",
        "--console-log-level=error", "--log=-", "--log-level=notice",
        "--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=10",
        "--stop-with-process=%d" % os.getpid(),
    ]
    if a.tracker:
        cmd += ["--bt-exclude-tracker=*", "--bt-tracker=" + ",".join(a.tracker)]
    if udp_tracker:
        dht_port = peerlib.free_port(a.ip)
        while dht_port == a.port:  # free, but about to be the listen port
            dht_port = peerlib.free_port(a.ip)
        cmd += ["--dht-listen-port=%d" % dht_port,
                "--dht-file-path=" + os.path.join(work, "dht.dat")]
    if a.announce_interval:
        cmd.append("--bt-tracker-interval=%d" % a.announce_interval)
    if a.require_crypto:
        # Protocol encryption, RC4 only: plaintext peers and handshakes are refused.
        cmd += ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
    if a.upload_limit:
        cmd.append("--max-overall-upload-limit=%d" % a.upload_limit)
    if a.download_limit:
        cmd.append("--max-overall-download-limit=%d" % a.download_limit)
    if seeding:
        # hash the existing data first, then seed without a ratio limit
        cmd += ["--check-integrity=true", "--bt-hash-check-seed=true", "--seed-ratio=0.0"]
    elif a.keep_seeding:
        cmd += ["--seed-ratio=0.0"]
    else:
        cmd += ["--seed-time=0"]
    return cmd


def run(a, seeding):
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    directory = a.data_dir if seeding else a.out_dir
    source = a.torrent if seeding else a.source
    if not source.startswith("magnet:") and not os.path.isfile(source):
        fail("no such torrent file: %s" % source)
    os.makedirs(directory, exist_ok=True)
    if a.port == 0:
        a.port = peerlib.free_port(a.ip)
    work = tempfile.mkdtemp(prefix="shoal-aria2-")
    try:
        return supervise(a, life, seeding, directory, source, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def supervise(a, life, seeding, directory, source, work):
    proc = peerlib.spawn(aria2_command(a, directory, seeding, work) + [source],
                         stdout=peerlib.subprocess.PIPE, stderr=peerlib.subprocess.STDOUT)
    watcher = LogWatcher(proc.stdout)
    t0 = time.monotonic()
    ready = False
    done = False
    last_progress = 0.0
    exit_code = 0
    while not life.should_stop():
        for cmd in life.commands():
            log("aria2 driver: unsupported command", cmd)
        now = time.monotonic()
        rc = proc.poll()
        if not ready and (watcher.listening_port or peerlib.tcp_listening(a.port, a.ip)):
            emit("ready", port=a.port, ip=a.ip)
            ready = True
        if not seeding and not done and (watcher.completed or rc == 0):
            proc_done_at = now - t0
            if rc is None and not a.keep_seeding:
                # --seed-time=0: aria2 is on its way out; let it close its files
                try:
                    rc = proc.wait(15)
                except peerlib.subprocess.TimeoutExpired:
                    pass
            done = True
            emit("done", seconds=round(proc_done_at, 3), bytes=peerlib.dir_bytes(directory))
            if not a.keep_seeding:
                break
        if rc is not None:
            if seeding or not done:
                emit("error", message="aria2c exited with status %d (its log is on stderr)" % rc)
                exit_code = 2
            break
        if not seeding and not done:
            if ready and now - last_progress >= 1.0:
                last_progress = now
                emit("progress", bytes=peerlib.dir_bytes(directory))
            if now - t0 > a.timeout:
                emit("timeout", seconds=round(now - t0, 3), bytes=peerlib.dir_bytes(directory))
                life.reason = "timeout"
                exit_code = 3
                break
        time.sleep(0.05)
    peerlib.stop_process(proc)
    if exit_code == 0 and not seeding and not done:
        exit_code = 4  # stopped before the download completed
    emit("exit", reason=life.reason or ("complete" if done else "aria2c exited"), code=exit_code)
    sys.exit(exit_code)


def add_network_args(ap):
    ap.add_argument("--ip", default="127.0.0.1", help="address to listen on and dial from (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="listen port (default 0: pick a free one, reported in 'ready')")
    ap.add_argument("--upload-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--require-crypto", action="store_true",
                    help="protocol encryption required, RC4 only (aria2's default: plaintext allowed)")
    ap.add_argument("--download-limit", type=int, default=0, metavar="BYTES_PER_S", help="0 = unlimited")
    ap.add_argument("--tracker", action="append", default=[], metavar="URL",
                    help="announce here instead of the torrent's own trackers (repeatable)")
    ap.add_argument("--announce-interval", type=int, default=0, metavar="SECONDS",
                    help="re-announce this often, whatever the tracker says (0: tracker's interval)")
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
    run(a, seeding=a.role == "seed")


if __name__ == "__main__":
    main()
