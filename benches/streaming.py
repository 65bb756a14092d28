#!/usr/bin/python3
"""Streaming benchmark: `shoal stream` side by side with rqbit's HTTP streaming endpoint.

  /usr/bin/python3 benches/streaming.py [--only shoal,rqbit] [--measures seek,probe,stall]
                                        [--seeks 100] [--seeks-per-session 20] [--probe-runs 3] [--stall-seconds 30]
                                        [--bitrate-mib 2] [--shoal-mode disk|memory] [--json-out FILE]

Both clients stream from the same libtorrent seeder (tests/peers/lt_peer.py on 127.0.0.2, its
upload rate-limited, loopback included), one client at a time, each a fresh process writing to
a fresh folder. Three measures:

  seek   time to first byte of 64 KiB Range reads at random offsets of a 512 MiB file behind a
         32 MiB/s seeder, each a fresh request, issued while the download runs (p50, p95); in
         sessions of 20 seeks, each a fresh process, since the whole download lasts ~16 s;
  probe  time from spawning the client until `ffprobe` succeeds on the stream URL of an MP4
         whose moov atom is at the end, behind a 1 MiB/s seeder (median of --probe-runs);
  stall  a reader consuming the 512 MiB file at a fixed bitrate B behind a seeder limited to
         2 x B: how often, and for how long in all, it had to wait more than 250 ms beyond its
         schedule.

Shoal: `shoal stream T --json --http 127.0.0.1:P --peer SEED --listen 127.0.0.1:0 -o DIR`
(`--shoal-mode memory` drops -o). rqbit: `rqbit --http-api-listen-addr 127.0.0.1:P download T
-o DIR --initial-peers SEED`, stream URL /torrents/0/stream/0. Every byte read is checked
against the source file. See benches/README.md.
"""

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients  # noqa: E402
import payloads  # noqa: E402
import procs  # noqa: E402
from classic import machine_info  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LT_PEER = os.path.join(REPO, "tests", "peers", "lt_peer.py")
SEED_IP = "127.0.0.2"
CLIENT_IP = "127.0.0.1"
MIB = 1 << 20
SEEK_BYTES = 64 << 10
STALL_THRESHOLD_S = 0.25
TICK_S = 0.1
CLIENTS = ("shoal", "rqbit")
MEASURES = ("seek", "probe", "stall")


def log(*parts):
    print(*parts, flush=True)


def parse_args():
    default_target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="shoal,rqbit", help="clients (default shoal,rqbit)")
    ap.add_argument("--measures", default="seek,probe,stall", help="which measures (default all three)")
    ap.add_argument("--seeks", type=int, default=100, help="random seeks per client (default 100)")
    ap.add_argument("--seeks-per-session", type=int, default=20,
                    help="seeks per client process: each session restarts the download (default 20)")
    ap.add_argument("--seek-gap-ms", type=float, default=50, help="pause between two seeks (default 50 ms)")
    ap.add_argument("--seek-rate-mib", type=float, default=32, help="seeder limit for `seek` (default 32 MiB/s)")
    ap.add_argument("--probe-runs", type=int, default=3, help="cold starts per client for `probe` (default 3)")
    ap.add_argument("--probe-rate-mib", type=float, default=1, help="seeder limit for `probe` (default 1 MiB/s)")
    ap.add_argument("--mp4-seconds", type=int, default=60, help="length of the test MP4 (default 60 s)")
    ap.add_argument("--mp4-kbps", type=int, default=4000, help="video bitrate of the test MP4 (default 4000)")
    ap.add_argument("--bitrate-mib", type=float, default=2, help="the stall reader's rate B (default 2 MiB/s)")
    ap.add_argument("--stall-seconds", type=float, default=30, help="how long the stall reader reads (default 30)")
    ap.add_argument("--shoal-mode", choices=("disk", "memory"), default="disk",
                    help="disk: shoal stream -o DIR, like rqbit; memory: bounded memory store")
    ap.add_argument("--cache-dir", default=os.path.join(default_target, "bench-streaming"),
                    help="payloads, torrents, results and logs (default: target/bench-streaming)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the seek offsets")
    ap.add_argument("--shoal", default=None, help="shoal binary (default: $CARGO_TARGET_DIR or target/release/shoal)")
    ap.add_argument("--rqbit", default=None, help="rqbit binary (default: rqbit on PATH or ~/.cargo/bin/rqbit)")
    ap.add_argument("--json-out", default=None, help="results file (default: CACHE_DIR/results-<time>.json)")
    a = ap.parse_args()
    a.only = [c.strip() for c in a.only.split(",") if c.strip()]
    a.measures = [m.strip() for m in a.measures.split(",") if m.strip()]
    for c in a.only:
        if c not in CLIENTS:
            ap.error("unknown client %r (known: %s)" % (c, ", ".join(CLIENTS)))
    for m in a.measures:
        if m not in MEASURES:
            ap.error("unknown measure %r (known: %s)" % (m, ", ".join(MEASURES)))
    return a


# ---------------------------------------------------------------- payloads


def ensure_mp4(cache_dir, seconds, kbps):
    """An H.264/AAC MP4 with its moov atom after mdat (ffmpeg's default, no faststart) and its
    v1 torrent, made once per (seconds, kbps) and reused."""
    stem = os.path.join(cache_dir, "clip-%ds-%dk" % (seconds, kbps))
    path, torrent = stem + ".mp4", stem + ".torrent"
    if not (os.path.isfile(path) and os.path.isfile(torrent)):
        log("making %s with ffmpeg" % path)
        rate = "%dk" % kbps
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                        "-vf", "noise=alls=30:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", "-b:v", rate, "-maxrate", rate, "-bufsize", "%dk" % (kbps // 2),
                        "-c:a", "aac", "-b:a", "128k", "-f", "mp4", path + ".partial"],
                       check=True, timeout=600)
        os.replace(path + ".partial", path)
        info_hash, _ = payloads._make_torrent(path, torrent, 0)
    if not moov_after_mdat(path):
        raise SystemExit("%s: moov is not after mdat" % path)
    import libtorrent as lt
    ti = lt.torrent_info(torrent)
    return payloads.Payload("mp4", path, torrent, os.path.getsize(path), None, str(ti.info_hashes().v1),
                            ti.piece_length())


def moov_after_mdat(path):
    order = []
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            head = f.read(16)
            box = int.from_bytes(head[:4], "big")
            if box == 1:
                box = int.from_bytes(head[8:16], "big")
            elif box == 0:
                box = size - offset
            if box < 8:
                return False
            order.append(head[4:8])
            offset += box
    return b"mdat" in order and b"moov" in order and order.index(b"moov") > order.index(b"mdat")


# ---------------------------------------------------------------- seeder


class Seeder:
    """tests/peers/lt_peer.py seeding one torrent on SEED_IP, upload limited (loopback included:
    the driver puts every address in libtorrent's global peer class). Stopped by closing its
    stdin, then SIGTERM/SIGKILL to its own PID."""

    def __init__(self, payload, rate, logs, tag, max_seconds):
        self.rate = rate
        self.log_path = os.path.join(logs, "seeder-%s.log" % tag)
        self._log = open(self.log_path, "wb")
        argv = [clients.PYTHON, LT_PEER, "seed", payload.torrent, payload.data_dir, "--ip", SEED_IP,
                "--upload-limit", str(int(rate)), "--max-seconds", str(int(max_seconds))]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        deadline = time.monotonic() + 180
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "ready":
                self.port = event["port"]
                break
            if event.get("event") == "error":
                break
        if self.port is None:
            self.stop()
            raise SystemExit("libtorrent seeder did not start: see %s" % self.log_path)
        # keep reading its events so that its stdout never fills up
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    @property
    def addr(self):
        return "%s:%d" % (SEED_IP, self.port)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------- clients


def http_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Client:
    """One streaming client process: its stream URL and how far its download is."""

    def __init__(self, name, paths, payload, seed_addr, out_dir, logs, tag, limit_s, shoal_mode):
        self.name = name
        self.port = procs.free_port(CLIENT_IP)
        self.payload = payload
        file_name = os.path.basename(payload.path)
        if name == "shoal":
            argv = [paths["shoal"], "stream", payload.torrent, "--json", "--http", "%s:%d" % (CLIENT_IP, self.port),
                    "--peer", seed_addr, "--listen", "%s:0" % CLIENT_IP]
            if shoal_mode == "disk":
                argv += ["-o", out_dir]
            self.url = "http://%s:%d/files/0/%s" % (CLIENT_IP, self.port, file_name)
            self.status_url = "http://%s:%d/api/status" % (CLIENT_IP, self.port)
            env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), NO_COLOR="1")
        else:
            argv = ([paths["rqbit"], "--disable-dht", "--disable-dht-persistence", "--disable-lsd",
                     "--disable-upnp-port-forward", "--listen-ip", CLIENT_IP, "-v", "warn",
                     "--http-api-listen-addr", "%s:%d" % (CLIENT_IP, self.port),
                     "download", payload.torrent, "-o", out_dir, "--initial-peers", seed_addr])
            self.url = "http://%s:%d/torrents/0/stream/0" % (CLIENT_IP, self.port)
            self.status_url = "http://%s:%d/torrents/0/stats/v1" % (CLIENT_IP, self.port)
            env = None
        self.run = procs.Run(tag, argv, os.path.join(logs, tag + ".log"), os.path.join(logs, tag + ".time"),
                             limit_s, env=env)

    @property
    def t0(self):
        return self.run.t0

    def progress(self):
        """Fraction of the torrent downloaded and verified (None if the client does not say)."""
        try:
            s = http_json(self.status_url)
        except (OSError, ValueError):
            return None
        if self.name == "shoal":
            return s["pieces_have"] / max(1, s["pieces_total"])
        return s["progress_bytes"] / max(1, s["total_bytes"])

    def wait_ready(self, timeout=60):
        """Until the status endpoint answers (the torrent is known)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run.poll() is not None:
                raise RuntimeError("%s exited (%s): %s" % (self.name, self.run.poll(), self.run.log_tail(5)))
            if self.progress() is not None:
                return
            time.sleep(0.02)
        raise RuntimeError("%s: no status after %d s" % (self.name, timeout))

    def wait_downloading(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.progress()
            if p is not None and p > 0:
                return p
            time.sleep(0.02)
        raise RuntimeError("%s: nothing downloaded after %d s" % (self.name, timeout))

    def stop(self):
        self.run.stop()
        rss = self.run.peak_rss_kib()
        return round(rss / 1024, 1) if rss else None


# ---------------------------------------------------------------- HTTP reads


class HttpRead:
    """A GET with a Range header on a fresh connection, read with raw sockets so that the time
    to the first body byte is the server's, not a library's."""

    def __init__(self, url, first, last=None, timeout=60):
        assert url.startswith("http://")
        hostport, _, path = url[len("http://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.t0 = time.monotonic()
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rng = "bytes=%d-%s" % (first, "" if last is None else str(last))
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nRange: %s\r\nConnection: close\r\n\r\n"
                           % (path, hostport, rng)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the response head (%r)" % buf[:200])
            buf += chunk
        head, _, self.pending = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            raise RuntimeError("chunked responses are not handled by this benchmark")
        self.t_first = time.monotonic() if self.pending else None

    def read(self, n):
        """Up to n body bytes (fewer only at the end)."""
        out = bytearray(self.pending[:n])
        self.pending = self.pending[n:]
        while len(out) < n:
            chunk = self.sock.recv(min(1 << 20, n - len(out)))
            if not chunk:
                break
            if self.t_first is None:
                self.t_first = time.monotonic()
            out += chunk
        return bytes(out)

    def close(self):
        self.sock.close()


def r1(x):
    return None if x is None else round(x, 1)


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---------------------------------------------------------------- measures


class Bench:
    def __init__(self, a):
        self.a = a
        self.paths = {"shoal": os.path.abspath(clients.find_shoal(REPO, a.shoal)),
                      "rqbit": os.path.abspath(clients.find_rqbit(a.rqbit))}
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.logs = os.path.join(a.cache_dir, "logs-" + self.stamp)
        self.dl = os.path.join(a.cache_dir, "dl")
        self.results = {}

    def client(self, name, payload, seeder, tag, limit_s):
        out = os.path.join(self.dl, tag)
        subprocess.run(["rm", "-rf", out], check=True)
        os.makedirs(out)
        return Client(name, self.paths, payload, seeder.addr, out, self.logs, tag, limit_s, self.a.shoal_mode)

    def cleanup(self, tag):
        subprocess.run(["rm", "-rf", os.path.join(self.dl, tag)], check=True)

    def seek(self, big):
        """Seeks in sessions of --seeks-per-session, each a fresh process and download, so that
        every seek is issued while the download runs (512 MiB at 32 MiB/s lasts ~16 s); the
        status is asked before each seek (outside the timing), and seeks issued after the
        download completed are left out of the figures."""
        a = self.a
        rate = a.seek_rate_mib * MIB
        seeder = Seeder(big, rate, self.logs, "seek", 3600)
        log("seek: libtorrent seeder at %.0f MiB/s on %s" % (a.seek_rate_mib, seeder.addr))
        offsets = random.Random(a.seed).sample(range(0, big.size - SEEK_BYTES), a.seeks)
        per = max(1, a.seeks_per_session)
        sessions = [offsets[i:i + per] for i in range(0, len(offsets), per)]
        rows = {name: {"ttfb": [], "full": [], "late": 0, "wrong": 0, "rss": []} for name in a.only}
        try:
            with open(big.path, "rb") as src:
                for n, batch in enumerate(sessions):
                    for name in a.only:  # interleaved, so that drift hits both alike
                        tag = "seek-%s-%d" % (name, n)
                        row = rows[name]
                        c = self.client(name, big, seeder, tag, 600)
                        try:
                            c.wait_ready()
                            if not (name == "shoal" and a.shoal_mode == "memory"):
                                # memory mode fetches only what readers ask for: nothing to wait for
                                c.wait_downloading()
                            for off in batch:
                                before = c.progress()
                                r = HttpRead(c.url, off, off + SEEK_BYTES - 1)
                                body = r.read(SEEK_BYTES)
                                t_done = time.monotonic()
                                r.close()
                                src.seek(off)
                                if r.status != 206 or body != src.read(SEEK_BYTES):
                                    row["wrong"] += 1
                                if before is None or before >= 1:
                                    row["late"] += 1
                                else:
                                    row["ttfb"].append(((r.t_first or t_done) - r.t0) * 1000)
                                    row["full"].append((t_done - r.t0) * 1000)
                                time.sleep(a.seek_gap_ms / 1000)
                            progress = c.progress()
                        finally:
                            row["rss"].append(c.stop())
                            self.cleanup(tag)
                        log("  %-6s session %d: %d seeks, download at %s after the last" % (
                            name, n + 1, len(batch), "?" if progress is None else "%.0f%%" % (progress * 100)))
                        time.sleep(1)
        finally:
            seeder.stop()
        out = {}
        for name, row in rows.items():
            ttfb, full = row["ttfb"], row["full"]
            out[name] = {"p50_ms": r1(percentile(ttfb, 0.5)), "p95_ms": r1(percentile(ttfb, 0.95)),
                         "max_ms": r1(max(ttfb) if ttfb else None), "full_p50_ms": r1(percentile(full, 0.5)),
                         "full_p95_ms": r1(percentile(full, 0.95)), "seeks": len(ttfb),
                         "after_download_complete": row["late"], "wrong": row["wrong"],
                         "peak_rss_mib": max((x for x in row["rss"] if x), default=None),
                         "ttfb_ms": [round(x, 2) for x in ttfb]}
            o = out[name]
            log("  %-6s ttfb p50 %s ms, p95 %s ms, max %s ms over %d seeks (%d more after completion left out); "
                "%d wrong" % (name, o["p50_ms"], o["p95_ms"], o["max_ms"], o["seeks"], o["after_download_complete"],
                              o["wrong"]))
        self.results["seek"] = out

    def probe(self, mp4):
        a = self.a
        seeder = Seeder(mp4, a.probe_rate_mib * MIB, self.logs, "probe", 3600)
        log("probe: libtorrent seeder at %.1f MiB/s on %s; %s (%.1f MiB)" % (
            a.probe_rate_mib, seeder.addr, os.path.basename(mp4.path), mp4.size / MIB))
        out = {name: {"seconds": [], "progress": [], "attempts": []} for name in a.only}
        try:
            for i in range(a.probe_runs):
                for name in a.only:  # interleaved, so that drift hits both alike
                    tag = "probe-%s-%d" % (name, i)
                    c = self.client(name, mp4, seeder, tag, 300)
                    seconds, attempts, progress = None, 0, None
                    try:
                        deadline = c.t0 + 120
                        while time.monotonic() < deadline and c.run.poll() is None:
                            attempts += 1
                            try:
                                p = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams",
                                                    c.url], capture_output=True, text=True, timeout=60)
                            except subprocess.TimeoutExpired:
                                continue
                            if p.returncode == 0 and "codec_name=h264" in p.stdout:
                                seconds = time.monotonic() - c.t0
                                break
                            time.sleep(0.05)
                        progress = c.progress()
                    finally:
                        c.stop()
                        self.cleanup(tag)
                    out[name]["seconds"].append(None if seconds is None else round(seconds, 3))
                    out[name]["progress"].append(progress)
                    out[name]["attempts"].append(attempts)
                    log("  %-6s run %d: ffprobe ok after %s s (%d attempts), download at %s" % (
                        name, i + 1, "FAILED" if seconds is None else "%.2f" % seconds, attempts,
                        "?" if progress is None else "%.0f%%" % (progress * 100)))
                    time.sleep(1)
        finally:
            seeder.stop()
        for row in out.values():
            ok = [s for s in row["seconds"] if s is not None]
            row["median_s"] = round(statistics.median(ok), 3) if ok else None
            row["failures"] = len(row["seconds"]) - len(ok)
        self.results["probe"] = out

    def stall(self, big):
        a = self.a
        rate = a.bitrate_mib * MIB
        seeder = Seeder(big, 2 * rate, self.logs, "stall", 3600)
        log("stall: reader at %.1f MiB/s for %.0f s, libtorrent seeder at %.1f MiB/s on %s" % (
            a.bitrate_mib, a.stall_seconds, 2 * a.bitrate_mib, seeder.addr))
        out = {}
        chunk = int(rate * TICK_S)
        try:
            with open(big.path, "rb") as src:
                for name in a.only:
                    tag = "stall-%s" % name
                    c = self.client(name, big, seeder, tag, 600)
                    stalls, stalled_s, worst, wrong, consumed, startup = 0, 0.0, 0.0, 0, 0, None
                    try:
                        c.wait_ready()
                        r = HttpRead(c.url, 0)
                        first = r.read(chunk)
                        start = r.t_first or time.monotonic()
                        startup = start - r.t0
                        if first != src.read(len(first)):
                            wrong += 1
                        consumed = len(first)
                        # the schedule: chunk i is due at start + i * TICK; a late chunk beyond the
                        # threshold is a stall, after which the schedule restarts from now (as a
                        # player resumes after rebuffering), so one outage counts once
                        base, i = start, 1
                        end = start + a.stall_seconds
                        while time.monotonic() < end and consumed < big.size:
                            due = base + i * TICK_S
                            now = time.monotonic()
                            if now < due:
                                time.sleep(due - now)
                            data = r.read(min(chunk, big.size - consumed))
                            if not data:
                                wrong += 1
                                break
                            if data != src.read(len(data)):
                                wrong += 1
                            consumed += len(data)
                            late = time.monotonic() - due
                            if late > STALL_THRESHOLD_S:
                                stalls += 1
                                stalled_s += late
                                worst = max(worst, late)
                                base, i = time.monotonic(), 1
                            else:
                                i += 1
                        r.close()
                    finally:
                        rss = c.stop()
                        self.cleanup(tag)
                    out[name] = {"stalls": stalls, "stalled_s": round(stalled_s, 3), "worst_s": round(worst, 3),
                                 "startup_s": None if startup is None else round(startup, 3),
                                 "consumed_mib": round(consumed / MIB, 1), "wrong_chunks": wrong,
                                 "peak_rss_mib": rss}
                    log("  %-6s %d stalls, %.2f s stalled (worst %.2f s), first byte after %.3f s, %.0f MiB read, "
                        "%d wrong" % (name, stalls, stalled_s, worst, startup or 0, consumed / MIB, wrong))
                    src.seek(0)
                    time.sleep(1)
        finally:
            seeder.stop()
        self.results["stall"] = out

    def table(self):
        def ratio(x, y):
            if x is None or y is None:
                return "-"
            if y == 0:
                return "-" if x == 0 else "inf"
            return "%.2f" % (x / y)

        def cell(v, fmt):
            return "-" if v is None else fmt % v

        rows = []
        get = lambda m, c, k: self.results.get(m, {}).get(c, {}).get(k)  # noqa: E731
        for label, m, k, fmt in [("seek TTFB p50 (ms)", "seek", "p50_ms", "%.1f"),
                                 ("seek TTFB p95 (ms)", "seek", "p95_ms", "%.1f"),
                                 ("seek 64 KiB p50 (ms)", "seek", "full_p50_ms", "%.1f"),
                                 ("cold start -> ffprobe ok (s)", "probe", "median_s", "%.2f"),
                                 ("stalls (count)", "stall", "stalls", "%d"),
                                 ("stalled (s)", "stall", "stalled_s", "%.2f"),
                                 ("stream first byte (s)", "stall", "startup_s", "%.3f")]:
            if m not in self.results:
                continue
            s, q = get(m, "shoal", k), get(m, "rqbit", k)
            rows.append((label, cell(s, fmt), cell(q, fmt), ratio(s, q)))
        width = max(len(r[0]) for r in rows) if rows else 10
        lines = ["| %-*s | %10s | %10s | %12s |" % (width, "measure", "shoal", "rqbit", "shoal/rqbit"),
                 "|%s|%s|%s|%s|" % ("-" * (width + 2), "-" * 12, "-" * 12, "-" * 14)]
        lines += ["| %-*s | %10s | %10s | %12s |" % (width, *r) for r in rows]
        return "\n".join(lines)

    def run(self):
        a = self.a
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.dl, exist_ok=True)
        for name in a.only:
            if not os.access(self.paths[name], os.X_OK):
                raise SystemExit("%s not found: %s" % (name, self.paths[name]))
        started = time.time()
        load_before = os.getloadavg()
        big = payloads.ensure(a.cache_dir, "512M", 0, log) if {"seek", "stall"} & set(a.measures) else None
        if "seek" in a.measures:
            self.seek(big)
        if "probe" in a.measures:
            self.probe(ensure_mp4(a.cache_dir, a.mp4_seconds, a.mp4_kbps))
        if "stall" in a.measures:
            self.stall(big)
        table = self.table()
        command = "/usr/bin/python3 benches/streaming.py " + " ".join(sys.argv[1:])
        result = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                  "seconds": round(time.time() - started, 1), "machine": machine_info(self.paths),
                  "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
                  "settings": {k: v for k, v in vars(a).items() if k not in ("shoal", "rqbit")},
                  "results": self.results, "table": table, "logs": self.logs}
        out = a.json_out or os.path.join(a.cache_dir, "results-%s.json" % self.stamp)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log("")
        log(table)
        log("load average (1/5/15 min) before %s, after %s" % (
            "/".join("%.1f" % x for x in load_before), "/".join("%.1f" % x for x in os.getloadavg())))
        log("results: %s\nlogs: %s" % (out, self.logs))
        wrong = sum(r.get("wrong", 0) for r in self.results.get("seek", {}).values())
        wrong += sum(r.get("wrong_chunks", 0) for r in self.results.get("stall", {}).values())
        failed = sum(r.get("failures", 0) for r in self.results.get("probe", {}).values())
        return 0 if wrong == 0 and failed == 0 else 1


def main():
    return Bench(parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
