#!/usr/bin/python3
"""WebRTC benchmark (issue 5): three seeders, one browser leecher, side by side in one run.

  /usr/bin/python3 benches/webrtc.py [--runs 3] [--size 50M] [--only shoal,lt21,browser]
                                     [--piece-kib 256] [--json-out FILE] [--no-warmup]
                                     [--shoal-arg=--webrtc-mtu=1450]

The same random file (50 MiB) is seeded by
  shoal    `shoal seed T -o DIR --tracker WS --listen 127.0.0.1:0 --json` (T made by `shoal create
           --piece-size 256KiB`), the native WebRTC stack (str0m);
  lt21     PyPI libtorrent 2.1 with its built-in WebTorrent support (benches/lt21_webrtc_seeder.py,
           libtorrent's default settings);
  browser  WebTorrent 3 in headless Chromium (tests/web/browser_peer.mjs seed),
and downloaded from each, one download at a time, by a fresh WebTorrent 3 in headless Chromium
(`tests/web/browser_peer.mjs leech MAGNET OUT_DIR`), which finds the seeder through one
`shoal tracker --ws` and nothing else. Each seeder seeds a copy of the file under its own name
(so the three torrents differ and a leecher meets exactly one seeder); all use 256 KiB pieces.
Runs are interleaved (the order rotates every round) after one untimed download per seeder.
The leecher's Chromium shows its addresses (no mDNS names), so `shoal seed` sees a peer on this
host and answers it with 1500-byte datagrams; `--shoal-arg=--webrtc-mtu=1150` forces the size a
peer across a network gets (an explicit `--webrtc-mtu` applies to every peer).

Per download: `seconds` from the leecher adding the magnet to its last piece verified (tracker
announce, WebRTC set-up, metadata and data all count), MB/s = bytes / 10^6 / seconds (as the
reference figures in docs/BENCHMARKS.md were measured), time to first byte = from adding the
magnet to the first block of data, CPU seconds of the seeder and of the leecher's process tree.
Every download is checked (SHA-1 of what was written) and deleted. Medians per seeder and the
ratios Shoal / browser and Shoal / libtorrent 2.1 are printed; everything goes to a JSON file.

WebRTC in Chromium needs an interface other than loopback, so the script re-executes itself in a
private network namespace (`unshare -n`, or `unshare -r -n` without root): lo, plus a veth pair
holding 198.18.0.1/24 and a default route with no uplink. Everything then talks over 127.0.0.1 /
198.18.0.1 only. Before that, it installs PyPI libtorrent 2.1 into a venv outside the repository
if none is there (the venv scripts/install-test-deps.sh makes, else /var/cache/shoal-lt21-venv).
See benches/README.md.
"""

import argparse
import datetime
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import clients  # noqa: E402
import payloads  # noqa: E402
import procs  # noqa: E402

IN_NETNS = "SHOAL_WEBRTC_BENCH_IN_NETNS"
BROWSER_PEER = os.path.join(REPO, "tests", "web", "browser_peer.mjs")
DEFAULT_VENV = "/var/cache/shoal-lt21-venv"
LT21_VERSION = "2.1.1"
SEEDERS = ("shoal", "lt21", "browser")
LABELS = {"shoal": "Shoal native → Chromium", "lt21": "libtorrent 2.1 → Chromium",
          "browser": "WebTorrent Chromium → Chromium"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*parts):
    print("[webrtc-bench %s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="50M", help="payload size (binary units), default 50M")
    ap.add_argument("--only", default=",".join(SEEDERS))
    ap.add_argument("--piece-kib", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=180, help="limit per download (s)")
    ap.add_argument("--cache-dir", default=os.path.join(REPO, "target", "bench-webrtc"))
    ap.add_argument("--shoal", default=None, help="shoal binary [$CARGO_TARGET_DIR/release/shoal]")
    ap.add_argument("--lt21-python", default=None, help="python of a venv with PyPI libtorrent 2.1")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--shoal-arg", action="append", default=[],
                    help="extra flag for `shoal seed`, e.g. --shoal-arg=--webrtc-mtu=1450")
    ap.add_argument("--chromium-arg", action="append", default=[], help="extra flag for the leecher's Chromium")
    ap.add_argument("--hard-limit", type=float, default=1800, help="bound on the whole run (s)")
    return ap.parse_args()


# ---- set-up outside the namespace ------------------------------------------------------------

def lt21_venv():
    """The venv scripts/install-test-deps.sh makes for PyPI libtorrent 2.1, else ours."""
    if os.environ.get("SHOAL_LT21_VENV"):  # install-test-deps.sh honours it too
        return os.environ["SHOAL_LT21_VENV"]
    try:
        with open(os.path.join(REPO, "scripts", "install-test-deps.sh")) as f:
            for m in re.finditer(r"(/[\w./-]*venv[\w./-]*)", f.read()):
                if "lt" in m.group(1) or "libtorrent" in m.group(1):
                    return m.group(1).rstrip("/")
    except OSError:
        pass
    return DEFAULT_VENV


def lt21_ok(python):
    try:
        out = subprocess.run([python, "-c", "import libtorrent as lt; print(lt.__version__)"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    v = out.stdout.strip()
    return v if out.returncode == 0 and v.startswith("2.1") else None


def ensure_lt21(explicit):
    if explicit:
        if not lt21_ok(explicit):
            sys.exit("%s has no libtorrent 2.1" % explicit)
        return explicit
    venv = lt21_venv()
    python = os.path.join(venv, "bin", "python")
    if lt21_ok(python):
        return python
    log("installing PyPI libtorrent %s into %s" % (LT21_VERSION, venv))
    if not os.path.exists(python):
        subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([python, "-m", "pip", "install", "-q", "libtorrent==%s" % LT21_VERSION], check=True, timeout=600)
    if not lt21_ok(python):
        sys.exit("libtorrent 2.1 did not install into %s" % venv)
    return python


NETNS_SETUP = ("ip link set lo up && ip link add v0 type veth peer name v1 && "
               "ip addr add 198.18.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up && "
               "ip route add default via 198.18.0.254 dev v0 && exec \"$@\"")


def reexec_in_netns(args, lt21_python):
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    env = dict(os.environ, **{IN_NETNS: "1"})
    argv = sys.argv[1:]
    if not args.lt21_python and lt21_python:
        argv += ["--lt21-python", lt21_python]
    cmd = ["timeout", "-k", "10", str(int(args.hard_limit))] + unshare + \
        ["sh", "-c", NETNS_SETUP, "sh", sys.executable, os.path.abspath(__file__)] + argv
    os.execvpe(cmd[0], cmd, env)


# ---- processes -------------------------------------------------------------------------------

class Proc:
    """A child under `timeout`, JSON-line events from its stdout, everything logged to a file."""

    def __init__(self, name, argv, log_dir, limit_s, cwd=None):
        self.name = name
        self.log_path = os.path.join(log_dir, name + ".log")
        self._log = open(self.log_path, "ab")
        self._log.write(("$ %s\n" % " ".join(argv)).encode())
        self._log.flush()
        self.events = queue.Queue()
        self.proc = subprocess.Popen(["timeout", "-k", "5", str(int(limit_s))] + argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, cwd=cwd)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._log.write(b"> " + line)
            self._log.flush()
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                self.events.put((time.monotonic(), ev))
        self.events.put((time.monotonic(), None))

    def wait_event(self, names, limit_s, seen=None):
        """The first event whose `event` is in `names`, as (monotonic time, event); every event
        read on the way goes to `seen`. Raises on exit, an error event or the time limit."""
        deadline = time.monotonic() + limit_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("%s: no %s within %.0f s" % (self.name, "/".join(names), limit_s))
            try:
                t, ev = self.events.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if ev is None:
                raise RuntimeError("%s exited (code %s) before %s; see %s" % (
                    self.name, self.proc.wait(), "/".join(names), self.log_path))
            if seen is not None:
                seen.append((t, ev))
            if ev.get("event") in names:
                return t, ev
            if ev.get("event") in ("error", "timeout"):
                raise RuntimeError("%s: %s" % (self.name, json.dumps(ev)[:400]))

    def cpu_seconds(self):
        return tree_cpu(self.pid)

    def stop(self, grace_s=10):
        """End of stdin first (every driver here stops on it), then SIGTERM, then SIGKILL; by PID."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                procs._signal(self.pid, signal.SIGTERM)  # `timeout` forwards it
                try:
                    self.proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    for pid in procs._descendants(self.pid):
                        procs._signal(pid, signal.SIGKILL)
                    procs._signal(self.pid, signal.SIGKILL)
                    self.proc.wait()
        self._reader.join(5)
        self._log.close()


def tree_cpu(pid):
    """User + system seconds of `pid` and its live descendants (and of children they reaped)."""
    total = 0
    for p in [pid] + procs._descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def npm_version(package):
    try:
        with open(os.path.join(REPO, "tests", "web", "node_modules", package, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def cargo_lock_version(crate):
    try:
        with open(os.path.join(REPO, "Cargo.lock")) as f:
            m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def median(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=2):
    return "-" if x is None else ("%.*f" % (digits, x))


# ---- the benchmark ---------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.only = [s for s in args.only.split(",") if s]
        for s in self.only:
            if s not in SEEDERS:
                sys.exit("unknown seeder %r (choose from %s)" % (s, ",".join(SEEDERS)))
        self.shoal = clients.find_shoal(REPO, args.shoal)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.cache = os.path.abspath(args.cache_dir)
        self.log_dir = os.path.join(self.cache, "logs-" + stamp)
        self.json_out = args.json_out or os.path.join(self.cache, "results-%s.json" % stamp)
        os.makedirs(self.log_dir, exist_ok=True)
        self.procs = []
        self.seeders = {}
        self.rows = []

    def spawn(self, name, argv, limit_s, cwd=None):
        p = Proc(name, argv, self.log_dir, limit_s, cwd=cwd)
        self.procs.append(p)
        return p

    def prepare(self):
        size = payloads.parse_size(self.args.size)
        self.size = size
        src = os.path.join(self.cache, "random-%s.bin" % payloads.canonical_label(self.args.size))
        if not os.path.exists(src) or os.path.getsize(src) != size:
            log("making", src)
            payloads._write_random(src, size)
        self.sha1 = payloads.file_sha1(src)
        # One copy per seeder, under its own name: three different torrents of the same bytes.
        self.files = {}
        for s in self.only:
            d = os.path.join(self.cache, "seed-" + s)
            os.makedirs(d, exist_ok=True)
            f = os.path.join(d, "payload-%s.bin" % s)
            if not os.path.exists(f) or os.path.getsize(f) != size or payloads.file_sha1(f) != self.sha1:
                shutil.copyfile(src, f)
            self.files[s] = f

    def start_tracker(self):
        port = procs.free_port()
        self.ws = "ws://127.0.0.1:%d" % port
        t = self.spawn("tracker", [self.shoal, "tracker", "--ws", "127.0.0.1:%d" % port, "--json"],
                       self.args.hard_limit)
        deadline = time.monotonic() + 20
        while not procs.tcp_listening(port):
            if time.monotonic() > deadline or t.proc.poll() is not None:
                raise RuntimeError("the tracker did not start; see %s" % t.log_path)
            time.sleep(0.1)
        log("tracker on", self.ws)

    def start_seeder(self, s):
        f = self.files[s]
        limit = self.args.hard_limit
        if s == "shoal":
            torrent = f + ".torrent"
            subprocess.run([self.shoal, "create", f, "-o", torrent, "--piece-size", "%dKiB" % self.args.piece_kib],
                           check=True, timeout=120, stdout=subprocess.DEVNULL)
            p = self.spawn("seed-shoal", [self.shoal, "seed", torrent, "-o", os.path.dirname(f), "--tracker", self.ws,
                                          "--listen", "127.0.0.1:0", "--json"] + self.args.shoal_arg, limit)
            _, started = p.wait_event(("started",), 60)
            p.wait_event(("seeding",), 120)
            magnet = started["magnet"]
        elif s == "lt21":
            p = self.spawn("seed-lt21", [self.args.lt21_python, os.path.join(HERE, "lt21_webrtc_seeder.py"), f,
                                         "--announce", self.ws, "--piece-kib", str(self.args.piece_kib),
                                         "--max-seconds", str(int(limit))], limit)
            _, ready = p.wait_event(("ready",), 120)
            magnet = ready["magnet"]
            self.lt21_version = ready.get("libtorrent")
        else:
            p = self.spawn("seed-browser", ["node", BROWSER_PEER, "seed", f, "--announce", self.ws,
                                            "--piece-length", str(self.args.piece_kib * 1024),
                                            "--max-seconds", str(int(limit))], limit)
            _, ready = p.wait_event(("ready",), 120)
            magnet = ready["magnet"]
            self.chromium_version = None
        # The tracker must know the seeder before a leecher announces: Shoal's and libtorrent's
        # first announces go out with their first offers right after start; give them a moment.
        time.sleep(2)
        self.seeders[s] = (p, magnet)
        log("seeder %s up: %s" % (s, magnet[:70]))

    def leech(self, s, rep, warmup=False):
        seeder, magnet = self.seeders[s]
        tag = "%s-%s" % (s, "warmup" if warmup else "run%d" % rep)
        out = os.path.join(self.cache, "dl", tag)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        limit = self.args.timeout
        argv = ["node", BROWSER_PEER, "leech", magnet, out, "--announce", self.ws, "--timeout", str(int(limit)),
                "--max-seconds", str(int(limit + 60))]
        for a in self.args.chromium_arg:
            argv += ["--chromium-arg", a]
        row = {"seeder": s, "rep": rep, "warmup": warmup, "ok": False, "load_before": os.getloadavg()[0]}
        seed_cpu0 = seeder.cpu_seconds()
        t_spawn = time.monotonic()
        p = self.spawn("leech-" + tag, argv, limit + 90)
        seen = []
        try:
            t_done, done = p.wait_event(("done",), limit + 60, seen)
            row["leech_cpu_s"] = p.cpu_seconds()
            row["seed_cpu_s"] = seeder.cpu_seconds() - seed_cpu0
            row["wall_s"] = t_done - t_spawn
            row["seconds"] = done["seconds"]
            row["first_byte_s"] = done.get("first_byte_seconds")
            row["bytes"] = done["bytes"]
            row["peers"] = done.get("peers")
            for _, ev in seen:
                if ev.get("event") == "metadata" and "metadata_s" not in row:
                    row["metadata_s"] = ev.get("seconds")
                if ev.get("event") == "peer_connected" and "connected_s" not in row:
                    row["connected_s"] = ev.get("seconds")
            got = payloads.file_sha1(os.path.join(out, os.path.basename(self.files[s])))
            row["ok"] = got == self.sha1 and done.get("sha1") == self.sha1 and done["bytes"] == self.size
            if not row["ok"]:
                row["error"] = "SHA-1 mismatch: wrote %s, want %s" % (got, self.sha1)
            row["mbps"] = done["bytes"] / 1e6 / done["seconds"]
            if row["first_byte_s"] is not None and done["seconds"] > row["first_byte_s"]:
                row["transfer_mbps"] = done["bytes"] / 1e6 / (done["seconds"] - row["first_byte_s"])
        except (RuntimeError, KeyError, OSError, ZeroDivisionError) as e:
            row["error"] = str(e)
        finally:
            p.stop()
            self.procs.remove(p)
            shutil.rmtree(out, ignore_errors=True)
        row["load_after"] = os.getloadavg()[0]
        log("%-7s %-7s %s" % (s, "warmup" if warmup else "run %d" % rep,
                              ("%.2f MB/s, %.2f s, first byte %s s, seeder CPU %.2f s, leecher CPU %.2f s" % (
                                  row["mbps"], row["seconds"], row["first_byte_s"], row["seed_cpu_s"],
                                  row["leech_cpu_s"])) if row.get("mbps") else "FAILED: " + row.get("error", "?")))
        return row

    def run(self):
        self.prepare()
        self.start_tracker()
        for s in self.only:
            self.start_seeder(s)
        if not self.args.no_warmup:
            for s in self.only:
                self.rows.append(self.leech(s, 0, warmup=True))
        for rep in range(1, self.args.runs + 1):
            k = (rep - 1) % len(self.only)
            for s in self.only[k:] + self.only[:k]:
                self.rows.append(self.leech(s, rep))

    def close(self):
        for p in reversed(self.procs):
            p.stop()

    def summary(self):
        out = {}
        for s in self.only:
            rs = [r for r in self.rows if r["seeder"] == s and not r["warmup"]]
            ok = [r for r in rs if r["ok"]]
            out[s] = {"ok": len(ok), "runs": len(rs)}
            for k in ("mbps", "seconds", "first_byte_s", "connected_s", "transfer_mbps", "seed_cpu_s",
                      "leech_cpu_s", "wall_s"):
                out[s][k] = median([r.get(k) for r in ok])
        sh = out.get("shoal", {})
        ratios = {
            "shoal_over_browser_mbps": ratio(sh.get("mbps"), out.get("browser", {}).get("mbps")),
            "shoal_over_lt21_mbps": ratio(sh.get("mbps"), out.get("lt21", {}).get("mbps")),
            "shoal_over_browser_first_byte": ratio(sh.get("first_byte_s"), out.get("browser", {}).get("first_byte_s")),
            "shoal_over_lt21_first_byte": ratio(sh.get("first_byte_s"), out.get("lt21", {}).get("first_byte_s")),
        }
        return out, ratios

    def table(self, summ, ratios):
        lines = ["| seeder → Chromium WebTorrent | ok/runs | MB/s | s | first byte s | MB/s after first byte "
                 "| seeder CPU s | leecher CPU s |", "|---|---|---|---|---|---|---|---|"]
        for s in self.only:
            m = summ[s]
            lines.append("| %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
                LABELS[s], m["ok"], m["runs"], fmt(m["mbps"]), fmt(m["seconds"]), fmt(m["first_byte_s"], 3),
                fmt(m["transfer_mbps"]), fmt(m["seed_cpu_s"]), fmt(m["leech_cpu_s"])))
        lines.append("")
        lines.append("Shoal / WebTorrent browser: MB/s %s (target ≥ 3), first byte %s" % (
            fmt(ratios["shoal_over_browser_mbps"]), fmt(ratios["shoal_over_browser_first_byte"])))
        lines.append("Shoal / libtorrent 2.1:     MB/s %s (target ≥ 1), first byte %s" % (
            fmt(ratios["shoal_over_lt21_mbps"]), fmt(ratios["shoal_over_lt21_first_byte"])))
        return "\n".join(lines)

    def versions(self):
        return {
            "shoal": version_of([self.shoal, "--version"]),
            "str0m": cargo_lock_version("str0m"),
            "libtorrent": getattr(self, "lt21_version", None),
            "chromium": version_of(["/usr/bin/chromium", "--version"]),
            "webtorrent": npm_version("webtorrent"),
            "playwright-core": npm_version("playwright-core"),
            "node": version_of(["node", "--version"]),
        }


def main():
    args = parse_args()
    if args.runs < 1 or args.runs > 50:
        sys.exit("--runs must be 1..50")
    only = args.only.split(",")
    if os.environ.get(IN_NETNS) != "1":
        lt21_python = ensure_lt21(args.lt21_python) if "lt21" in only else None
        reexec_in_netns(args, lt21_python)
    bench = Bench(args)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    try:
        bench.run()
    finally:
        bench.close()
    summ, ratios = bench.summary()
    result = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable] + sys.argv,
        "size": bench.size, "piece_kib": args.piece_kib, "runs": args.runs,
        "versions": bench.versions(),
        "machine": {"cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg(),
                    "uname": " ".join(os.uname())},
        "duration_s": time.monotonic() - t0,
        "summary": summ, "ratios": ratios, "rows": bench.rows, "logs": bench.log_dir,
    }
    with open(bench.json_out, "w") as f:
        json.dump(result, f, indent=1)
    print(bench.table(summ, ratios))
    print("versions:", json.dumps(result["versions"]))
    print("load average before %.2f, after %.2f; results in %s" % (load0[0], os.getloadavg()[0], bench.json_out))
    failed = [r for r in bench.rows if not r["ok"] and not r["warmup"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
