#!/usr/bin/python3
"""Classic (TCP) download benchmark: Shoal side by side with rqbit, libtorrent and aria2.

  /usr/bin/python3 benches/classic.py [--sizes 200M,1G] [--runs 3] [--only shoal,rqbit,libtorrent,aria2]
                                      [--scenarios lt,self] [--json-out FILE]

Scenario `lt`: one libtorrent seeder on 127.0.0.2 (TCP, tuned not to be the bottleneck); each
client leeches each payload from it as a whole process, timed from spawn to exit, peak RSS from
`/usr/bin/time -v`, output verified by SHA-1 and deleted. Scenario `self`: Shoal -> Shoal and
rqbit -> rqbit, the seeder started first (on 127.0.0.3) and probed over the wire until it
announces every piece. The table reports medians of --runs and ratios against rqbit in the same
scenario. See benches/README.md.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bt_probe  # noqa: E402
import clients  # noqa: E402
import payloads  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
from static_tracker import StaticTracker  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LT_SEED_IP = "127.0.0.2"
SELF_SEED_IP = "127.0.0.3"
SCENARIO_NAMES = {"lt": "libtorrent -> CLIENT", "self": "CLIENT -> CLIENT"}


def log(*parts):
    print(*parts, flush=True)


def parse_args():
    default_target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200M,1G", help="payload sizes, binary units (default 200M,1G)")
    ap.add_argument("--runs", type=int, default=3, help="runs per client and size; the table shows medians")
    ap.add_argument("--only", default=",".join(clients.LEECHERS),
                    help="clients to run (default %s; also %s: Shoal with --no-utp, with "
                         "encryption off, with RC4 required; %s: libtorrent with RC4 required)"
                         % (",".join(clients.LEECHERS), ",".join(clients.SHOAL_VARIANTS),
                            ",".join(clients.LT_VARIANTS)))
    ap.add_argument("--transport", choices=["tcp", "utp"], default="tcp",
                    help="utp: the libtorrent seeder and leecher speak uTP only (TCP off both ways); "
                         "Shoal's defaults reach it over uTP")
    ap.add_argument("--scenarios", default="lt,self",
                    help="lt: libtorrent seeder -> each client; self: shoal -> shoal, rqbit -> rqbit")
    ap.add_argument("--cache-dir", default=os.path.join(default_target, "bench-classic"),
                    help="payloads and torrents, kept across runs (default: target/bench-classic)")
    ap.add_argument("--dl-dir", default=None, help="where leechers write (default: CACHE_DIR/dl)")
    ap.add_argument("--piece-kib", type=int, default=0, help="piece size of new torrents; 0: libtorrent's choice")
    ap.add_argument("--timeout", type=float, default=0,
                    help="seconds allowed per download (default: 30 + 1 s per 5 MB)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed libtorrent download that warms each seeder up")
    ap.add_argument("--shoal", default=None, help="shoal binary (default: $CARGO_TARGET_DIR or target/release/shoal)")
    ap.add_argument("--rqbit", default=None, help="rqbit binary (default: rqbit on PATH or ~/.cargo/bin/rqbit)")
    ap.add_argument("--json-out", default=None, help="results file (default: CACHE_DIR/results-<time>.json)")
    a = ap.parse_args()
    a.only = [c.strip() for c in a.only.split(",") if c.strip()]
    for c in a.only:
        if c not in clients.KNOWN:
            ap.error("unknown client %r (known: %s)" % (c, ", ".join(clients.KNOWN)))
        if a.transport == "utp" and c in ("rqbit", "aria2"):
            ap.error("%s is not benchmarked over uTP (aria2 has no uTP; rqbit's is experimental)" % c)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for s in a.scenarios:
        if s not in SCENARIO_NAMES:
            ap.error("unknown scenario %r (known: lt, self)" % s)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    try:
        a.size_labels = [payloads.canonical_label(s) for s in a.sizes.split(",") if s.strip()]
    except ValueError as e:
        ap.error(str(e))
    a.dl_dir = a.dl_dir or os.path.join(a.cache_dir, "dl")
    return a


def limit_for(size, explicit):
    return explicit if explicit > 0 else 30 + size / 5e6


def machine_info(paths):
    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
            return out.splitlines()[0] if out else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    import libtorrent
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "shoal": first_line([paths["shoal"], "--version"]), "rqbit": first_line([paths["rqbit"], "--version"]),
            "aria2": first_line(["aria2c", "--version"]), "libtorrent": libtorrent.__version__,
            "python": platform.python_version()}


def available(client, paths):
    exe = clients.binary_for(client, paths)
    return os.path.isfile(exe) and os.access(exe, os.X_OK)


def verify_output(out_dir, payload):
    """None if out_dir holds exactly the payload; otherwise what is wrong."""
    got = os.path.join(out_dir, payload.name)
    if not os.path.isfile(got):
        found = [os.path.relpath(os.path.join(d, f), out_dir) for d, _, fs in os.walk(out_dir) for f in fs]
        return "no %s in the output folder (found: %s)" % (payload.name, ", ".join(found) or "nothing")
    size = os.path.getsize(got)
    if size != payload.size:
        return "%s has %d bytes, expected %d" % (payload.name, size, payload.size)
    if payloads.file_sha1(got) != payload.sha1:
        return "%s: SHA-1 differs from the source" % payload.name
    return None


class Bench:
    def __init__(self, a):
        self.a = a
        self.paths = {"shoal": os.path.abspath(clients.find_shoal(REPO, a.shoal)),
                      "rqbit": os.path.abspath(clients.find_rqbit(a.rqbit))}
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.logs = os.path.join(a.cache_dir, "logs-" + self.stamp)
        self.rows = []
        self.skipped = {}
        self.tracker = None

    def leech(self, scenario, client, payload, run_index, seed_addr):
        limit = limit_for(payload.size, self.a.timeout)
        tag = "%s-%s-%s-%d" % (scenario, client, payload.label, run_index)
        out = os.path.join(self.a.dl_dir, tag)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        argv = clients.leech_argv(client, self.paths, payload.torrent, out, "%s:%d" % seed_addr,
                                  self.tracker.url, limit, utp=self.a.transport == "utp")
        run = procs.Run(tag, argv, os.path.join(self.logs, tag + ".log"), os.path.join(self.logs, tag + ".time"),
                        limit)
        rc = run.wait(limit + 10)
        if rc != 0:
            error = "exit code %s: %s" % (rc, run.log_tail(5).strip().replace("\n", " | ")[-400:])
        else:
            error = verify_output(out, payload)
        # Left-overs such as resume or control files: recorded, not an error.
        extra = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs
                       if os.path.join(d, f) != os.path.join(out, payload.name))
        shutil.rmtree(out, ignore_errors=True)
        rss = run.peak_rss_kib()
        row = {"scenario": SCENARIO_NAMES[scenario], "client": client, "size_label": payload.label,
               "size_bytes": payload.size, "piece_length": payload.piece_length, "run": run_index,
               "ok": error is None, "exit_code": rc, "wall_s": round(run.wall, 3),
               "peak_rss_mib": round(rss / 1024, 1) if rss else None, "cpu_s": run.cpu_seconds(), "error": error,
               "extra_files": extra, "argv": argv}
        self.rows.append(row)
        log("  %-10s %-5s run %d: %s %.2f s, %s MiB, %s CPU s%s" % (
            client, payload.label, run_index + 1, "ok" if row["ok"] else "FAILED", run.wall,
            row["peak_rss_mib"], row["cpu_s"], "" if row["ok"] else " (" + error + ")"))
        time.sleep(0.5)  # let the seeder see the disconnect before the next client arrives
        return row

    def warm_up(self, payload, seed_addr):
        """One untimed download by the libtorrent leecher before the measured ones. A seeder's
        first pass over a file costs more (libtorrent maps the file and faults every page in),
        which would otherwise fall on whichever client happens to run first."""
        if not self.a.warmup:
            return
        limit = limit_for(payload.size, self.a.timeout)
        tag = "warmup-%s-%s-%d" % (payload.label, seed_addr[0], seed_addr[1])
        out = os.path.join(self.a.dl_dir, tag)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        argv = clients.leech_argv("libtorrent", self.paths, payload.torrent, out, "%s:%d" % seed_addr, "", limit,
                                  utp=self.a.transport == "utp")
        run = procs.Run(tag, argv, os.path.join(self.logs, tag + ".log"), os.path.join(self.logs, tag + ".time"), limit)
        rc = run.wait(limit + 10)
        shutil.rmtree(out, ignore_errors=True)
        log("  warm-up   %-5s %s %.2f s" % (payload.label, "ok" if rc == 0 else "failed (exit %s)" % rc, run.wall))
        time.sleep(0.5)

    def scenario_lt(self, items):
        port = procs.free_port(LT_SEED_IP)
        total_limit = 120 + sum(limit_for(p.size, self.a.timeout) + 15 for p in items) * self.a.runs * len(self.a.only)
        argv = [clients.PYTHON, os.path.join(HERE, "lt_seeder.py"), "--ip", LT_SEED_IP, "--port", str(port),
                "--data-dir", self.a.cache_dir, "--max-seconds", str(int(total_limit))] + [p.torrent for p in items]
        if self.a.transport == "utp":
            argv += ["--set", "enable_incoming_utp=true", "--set", "enable_outgoing_utp=true",
                     "--set", "enable_incoming_tcp=false", "--set", "enable_outgoing_tcp=false"]
        seeder = procs.Run("lt-seeder", argv, os.path.join(self.logs, "lt-seeder.log"),
                           os.path.join(self.logs, "lt-seeder.time"), total_limit + 30)
        try:
            if self.a.transport == "utp":
                # No TCP to probe it over: its own word that every torrent is seeding.
                if not seeder.wait_for_line("READY", 300):
                    raise SystemExit("libtorrent seeder never got ready:\n%s" % seeder.log_tail())
            for p in items if self.a.transport == "tcp" else []:
                if not bt_probe.wait_until_seeding(LT_SEED_IP, port, p.info_hash, p.num_pieces, 120,
                                                   alive=lambda: seeder.poll() is None):
                    raise SystemExit("libtorrent seeder is not seeding %s:\n%s" % (p.label, seeder.log_tail()))
            log("libtorrent seeder ready on %s:%d" % (LT_SEED_IP, port))
            self.tracker.peers = [(LT_SEED_IP, port)]
            for p in items:
                self.warm_up(p, (LT_SEED_IP, port))
                for i in range(self.a.runs):
                    for client in self.a.only:  # interleaved, so that slow drift hits every client alike
                        if client not in self.skipped:
                            self.leech("lt", client, p, i, (LT_SEED_IP, port))
        finally:
            seeder.stop()
            rss = seeder.peak_rss_kib()
            log("libtorrent seeder stopped; peak RSS %s MiB" % (round(rss / 1024, 1) if rss else "?"))

    def scenario_self(self, items):
        for client in [c for c in clients.SELF_SEEDERS if c in self.a.only and c not in self.skipped]:
            for p in items:
                port = procs.free_port(SELF_SEED_IP)
                limit = 120 + (limit_for(p.size, self.a.timeout) + 15) * self.a.runs
                tag = "self-%s-seeder-%s" % (client, p.label)
                seeder = procs.Run(tag, clients.seed_argv(client, self.paths, p.torrent, p.data_dir, SELF_SEED_IP, port),
                                   os.path.join(self.logs, tag + ".log"), os.path.join(self.logs, tag + ".time"),
                                   limit)
                first = len(self.rows)
                try:
                    if not bt_probe.wait_until_seeding(SELF_SEED_IP, port, p.info_hash, p.num_pieces, 120,
                                                       alive=lambda: seeder.poll() is None):
                        state = ("exited with code %s" % seeder.poll()) if seeder.poll() is not None else "timed out"
                        error = "seeder never announced every piece (%s): %s" % (
                            state, seeder.log_tail(5).strip().replace("\n", " | "))
                        log("  %-10s %-5s %s" % (client, p.label, error[-400:]))
                        self.rows.append({"scenario": SCENARIO_NAMES["self"], "client": client,
                                          "size_label": p.label, "size_bytes": p.size, "run": 0, "ok": False,
                                          "wall_s": None, "peak_rss_mib": None, "error": error[-400:]})
                        continue
                    self.tracker.peers = [(SELF_SEED_IP, port)]
                    self.warm_up(p, (SELF_SEED_IP, port))
                    for i in range(self.a.runs):
                        self.leech("self", client, p, i, (SELF_SEED_IP, port))
                finally:
                    seeder.stop()
                    rss = seeder.peak_rss_kib()
                    for row in self.rows[first:]:
                        row["seeder_peak_rss_mib"] = round(rss / 1024, 1) if rss else None

    def run(self):
        a = self.a
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(a.dl_dir, exist_ok=True)
        for client in a.only:
            if not available(client, self.paths):
                self.skipped[client] = "not found: %s" % clients.binary_for(client, self.paths)
                log("skipping %s (%s)" % (client, self.skipped[client]))
        items = [payloads.ensure(a.cache_dir, label, a.piece_kib, log) for label in a.size_labels]
        self.tracker = StaticTracker()
        started = time.time()
        load_before = os.getloadavg()
        try:
            if "lt" in a.scenarios:
                log("== libtorrent seeder -> each client")
                self.scenario_lt(items)
            if "self" in a.scenarios:
                log("== client -> same client")
                self.scenario_self(items)
        finally:
            self.tracker.close()
        summary = report.summarize(self.rows)
        table = report.table(summary)
        command = "/usr/bin/python3 benches/classic.py " + " ".join(sys.argv[1:])
        result = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                  "seconds": round(time.time() - started, 1), "machine": machine_info(self.paths),
                  "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
                  "seeders": {"lt": LT_SEED_IP, "self": SELF_SEED_IP}, "skipped": self.skipped,
                  "summary": summary, "runs": self.rows, "logs": self.logs}
        out = a.json_out or os.path.join(a.cache_dir, "results-%s.json" % self.stamp)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log("")
        log(table)
        for s in summary:
            if s["error"]:
                log("%s %s %s: %s" % (s["scenario"].replace("CLIENT", s["client"]), s["size_label"], "failed", s["error"]))
        for client, why in self.skipped.items():
            log("%s skipped: %s" % (client, why))
        log("load average (1/5/15 min) before %s, after %s" % (
            "/".join("%.1f" % x for x in result["loadavg_1_5_15"]["before"]),
            "/".join("%.1f" % x for x in result["loadavg_1_5_15"]["after"])))
        log("results: %s\nlogs: %s" % (out, self.logs))
        return 0 if all(r["ok"] for r in self.rows) and not self.skipped else 1


def main():
    return Bench(parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
