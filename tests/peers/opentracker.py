#!/usr/bin/python3
"""opentracker (Debian package) as a loopback HTTP + UDP tracker for tests.

  opentracker.py [--ip 127.0.0.1] [--port N] [--allow INFO_HASH]... [--dir DIR]

Debian builds opentracker whitelist-only: a torrent is tracked only when its hex info hash is in
the whitelist. This driver keeps the list in DIR (a temporary folder by default) and reloads it
(SIGHUP) when told {"cmd":"allow","info_hash":"<40 hex digits>"} on stdin.

Run as root, opentracker chroots into DIR and drops to user "nobody", so DIR must be world
readable and the list is named relative to the chroot; as another user it just runs in DIR.

Events (see peerlib.py): {"event":"ready","port":N,"ip":IP,"announce":"http://IP:N/announce",
"udp":"udp://IP:N"} once the TCP port listens; {"event":"allowed","info_hash":...} once the
reloaded tracker accepts announces for it; "error" and "exit". The same port serves HTTP (TCP) and UDP announces.
"""

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import peerlib
from peerlib import emit, fail, log

HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")


def write_whitelist(path, hashes):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(h.lower() + "\n" for h in sorted(hashes)))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # opentracker never sees a half-written list


def announce(ip, port, info_hash, event):
    query = urllib.parse.urlencode({
        "info_hash": bytes.fromhex(info_hash), "peer_id": b"-SHOALPROBE-" + b"0" * 8,
        "port": 1, "uploaded": 0, "downloaded": 0, "left": 0, "event": event, "numwant": 0,
    }, quote_via=urllib.parse.quote)  # opentracker does not read "+" as a space
    with urllib.request.urlopen("http://%s:%d/announce?%s" % (ip, port, query), timeout=2) as r:
        return r.read()


def authorized(ip, port, info_hash):
    """True when opentracker takes an announce for info_hash instead of refusing it.

    opentracker checks its list only for announces that add a peer ("stopped" always passes),
    so the probe announces a peer id no one uses with numwant=0 and at once withdraws it."""
    try:
        if b"failure reason" in announce(ip, port, info_hash, "started"):
            return False
        announce(ip, port, info_hash, "stopped")
        return True
    except OSError as e:
        log("opentracker probe:", e)
        return False


def wait_authorized(ip, port, info_hash, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if authorized(ip, port, info_hash):
            return True
        time.sleep(0.05)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="TCP and UDP port (default 0: pick a free one)")
    ap.add_argument("--allow", action="append", default=[], metavar="INFO_HASH", help="hex v1 info hash to track")
    ap.add_argument("--dir", default=None, help="working (chroot) folder; default: a temporary one, removed on exit")
    peerlib.add_common_args(ap)
    a = ap.parse_args()

    for h in a.allow:
        if not HEX40.match(h):
            fail("--allow needs 40 hex digits, got %r" % h)
    life = peerlib.Lifeline(a.max_seconds, watch_stdin=not a.no_stdin)
    own_dir = a.dir is None
    workdir = tempfile.mkdtemp(prefix="shoal-opentracker-") if own_dir else os.path.abspath(a.dir)
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)  # "nobody" must reach the list after the chroot
    listfile = os.path.join(workdir, "whitelist.txt")
    allowed = set(h.lower() for h in a.allow)
    write_whitelist(listfile, allowed)
    if a.port == 0:
        a.port = peerlib.free_port(a.ip)
    as_root = os.geteuid() == 0
    cmd = ["opentracker", "-i", a.ip, "-p", str(a.port), "-P", str(a.port), "-d", workdir,
           "-w", "/whitelist.txt" if as_root else listfile]
    proc = peerlib.spawn(cmd, stdout=sys.stderr, stderr=sys.stderr)
    code = 0
    try:
        t0 = time.monotonic()
        while not peerlib.tcp_listening(a.port, a.ip):
            if proc.poll() is not None:
                fail("opentracker exited with status %d before listening" % proc.returncode)
            if time.monotonic() - t0 > 10:
                fail("opentracker did not listen on %s:%d within 10 s" % (a.ip, a.port))
            time.sleep(0.05)
        base = "%s:%d" % (a.ip, a.port)
        emit("ready", port=a.port, ip=a.ip, announce="http://%s/announce" % base, udp="udp://%s" % base)
        while not life.should_stop():
            for c in life.commands():
                h = c.get("info_hash")
                if c.get("cmd") == "allow" and isinstance(h, str) and HEX40.match(h):
                    allowed.add(h.lower())
                    write_whitelist(listfile, allowed)
                    proc.send_signal(signal.SIGHUP)
                    # The reload runs on opentracker's own thread, some time after the signal:
                    # say "allowed" only once the tracker itself answers for the hash.
                    if not wait_authorized(a.ip, a.port, h.lower(), timeout=10):
                        fail("opentracker still refuses %s 10 s after the reload" % h.lower())
                    emit("allowed", info_hash=h.lower())
                else:
                    log("opentracker driver: unsupported command", c)
            if proc.poll() is not None:
                emit("error", message="opentracker exited with status %d" % proc.returncode)
                code = 2
                break
            time.sleep(0.05)
    finally:
        peerlib.stop_process(proc)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    emit("exit", reason=life.reason or "opentracker exited", code=code)
    sys.exit(code)


if __name__ == "__main__":
    main()
