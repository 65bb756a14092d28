#!/usr/bin/python3
"""Tracker benchmark: Shoal's tracker side by side with aquatic_udp, aquatic_ws and
bittorrent-tracker. Started by run.sh (which builds Shoal first); see README.md.

  benches/tracker/bench.py --shoal BIN [--secs 30] [--rounds 1] [--only udp,wss,memory]
                           [--servers shoal,aquatic,bittorrent-tracker] [--conns 1000,10000]
                           [--loadgen aquatic|shoal --loadgen-bin BIN]

Throughput: each server pinned to core 0 (`taskset -c 0`, one thread or worker), the load
generator pinned to core 1 with the same config for every server, one server after the other,
the order repeated `--rounds` times. The load generator is aquatic's load testers (figure: their
"Average responses per second") or, with `--loadgen shoal`, our pipelining one
(crates/shoal-tracker/examples/loadgen.rs, figure: its `responses_per_sec`), which keeps many
requests in flight so that the server, not the generator, runs out of core first. The
server's CPU time during the run is read from /proc as well.

Memory: ws_idle.py (our own generator, also on core 1) opens TLS WebSocket connections that
each announce once and then stay idle; the server's RSS growth divided by the connections is
the memory per connected peer, at each count of --conns.
"""

import argparse
import itertools
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Every server start gets a port of its own: a listener that just closed thousands of
# connections leaves them in TIME_WAIT, and some servers do not bind over that.
PORTS = itertools.count(19100)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*parts):
    print("[tracker-bench]", *parts, flush=True)


def have(tool):
    return any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":"))


def run_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --- servers -----------------------------------------------------------------------------------


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """One tracker process on core 0. Its stdin stays open (Shoal's example exits when stdin
    closes); it is stopped with SIGTERM, then SIGKILL (aquatic ignores SIGTERM)."""

    def __init__(self, name, cmd, logdir, port, udp):
        self.name, self.cmd, self.port, self.udp = name, cmd, port, udp
        self.log_path = os.path.join(logdir, "%s.server.log" % name)
        self.proc = None

    def __enter__(self):
        logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + self.cmd, stdin=subprocess.PIPE,
                                     stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited at start (log: %s)" % (self.name, self.log_path))
            if (udp_answers if self.udp else tcp_accepts)(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("%s did not come up on port %d (log: %s)" % (self.name, self.port, self.log_path))

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tcp_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def udp_answers(port):
    """A BEP 15 connect request gets a 16-byte answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(bytes.fromhex("0000041727101980") + bytes(4) + b"\x12\x34\x56\x78", ("127.0.0.1", port))
        return len(s.recv(64)) == 16
    except OSError:
        return False
    finally:
        s.close()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def edit_toml(text, **keys):
    """Sets top-level or section keys (`section__key`) of a TOML text printed by `-p`."""
    for key, value in keys.items():
        name = key.split("__")[-1]
        text, n = re.subn(r"(?m)^%s = .*$" % re.escape(name), "%s = %s" % (name, value), text, count=1)
        if n != 1:
            raise RuntimeError("config key %s not found: did a new version rename it?" % name)
    return text


def shoal_cmd(args, work, proto, port):
    # The load testers send as fast as answers come back and pick torrents at random: lift the
    # per-connection limits meant for the open internet (aquatic has none of them), and the
    # 10,000 peers per swarm that the most popular torrents of our generator's skew reach.
    cfg = write(os.path.join(work, "shoal.toml"),
                "ws_messages_per_sec = 0\nws_max_torrents_per_connection = 1000000\n"
                "max_swarms = 10000000\nmax_peers_per_swarm = 10000000\nws_outbox_len = 1024\n")
    cmd = [args.shoal, "--threads", "1", "--config", cfg]
    if proto == "udp":
        return cmd + ["--udp", "127.0.0.1:%d" % port]
    return cmd + ["--ws", "127.0.0.1:%d" % port, "--tls-cert", args.cert, "--tls-key", args.key8]


def aquatic_udp_cmd(args, work, port):
    text = edit_toml(run_out(["aquatic_udp", "-p"]), socket_workers=1,
                     network__address='"127.0.0.1:%d"' % port)
    return ["aquatic_udp", "-c", write(os.path.join(work, "aquatic_udp.toml"), text)]


def aquatic_ws_cmd(args, work, port):
    # One socket worker and one swarm worker, both threads on core 0.
    text = edit_toml(run_out(["aquatic_ws", "-p"]), socket_workers=1, swarm_workers=1,
                     network__address='"127.0.0.1:%d"' % port, enable_tls="true",
                     tls_certificate_path='"%s"' % args.cert, tls_private_key_path='"%s"' % args.key8)
    return ["aquatic_ws", "-c", write(os.path.join(work, "aquatic_ws.toml"), text)]


def bt_cmd(args, work, port):
    return ["node", os.path.join(HERE, "bt_tracker.mjs"), str(port), args.cert, args.key]


SERVERS = {
    "udp": [("shoal", lambda a, w, p: shoal_cmd(a, w, "udp", p), "shoal", None),
            ("aquatic_udp", aquatic_udp_cmd, "aquatic", "aquatic_udp")],
    "wss": [("shoal", lambda a, w, p: shoal_cmd(a, w, "wss", p), "shoal", None),
            ("aquatic_ws", aquatic_ws_cmd, "aquatic", "aquatic_ws"),
            ("bittorrent-tracker", bt_cmd, "bittorrent-tracker", "node")],
}


def bt_available():
    return have("node") and os.path.isfile(
        os.path.join(REPO, "tests/web/node_modules/bittorrent-tracker/server.js"))


def available(name, tool):
    if name == "bittorrent-tracker":
        return bt_available()
    return tool is None or have(tool)


# --- throughput --------------------------------------------------------------------------------


def load_config(proto, args, work, port):
    if proto == "udp":
        text = edit_toml(run_out(["aquatic_udp_load_test", "-p"]), workers=1, duration=args.secs,
                         server_address='"127.0.0.1:%d"' % port)
        return "aquatic_udp_load_test", write(os.path.join(work, "udp_load.toml"), text)
    # 256 connections as in the reference figure; measured from the start (the
    # default waits until every connection is up, which bittorrent-tracker never gets to
    # under this load), so a server slow to accept connections under load is counted as such.
    text = edit_toml(run_out(["aquatic_ws_load_test", "-p"]), num_workers=1, duration=args.secs,
                     num_connections_per_worker=256, measure_after_max_connections_reached="false",
                     server_address='"127.0.0.1:%d"' % port)
    return "aquatic_ws_load_test", write(os.path.join(work, "ws_load.toml"), text)


# Our generator's load, the same for every server: as aquatic's WS tester's shape (256
# connections, 10 offers per announce, 10,000 torrents) plus 16 requests in flight on each and
# a scrape in every 20 requests; UDP 16 sockets of 64 announces in flight each (a scrape in 50),
# aquatic's 1M torrents and 2M peers. See the generator's source for what each flag means.
SHOAL_LOAD = {
    "udp": ["--sockets", "16", "--window", "64", "--torrents", "1000000", "--peers", "2000000",
            "--scrape-every", "50"],
    "wss": ["--conns", "256", "--window", "16", "--offers", "10", "--torrents", "10000",
            "--scrape-every", "20"],
}


def shoal_load_cmd(proto, args, port):
    target = "127.0.0.1:%d" % port if proto == "udp" else "wss://localhost:%d" % port
    return [args.loadgen_bin, "udp" if proto == "udp" else "ws", target,
            "--secs", str(args.secs)] + SHOAL_LOAD[proto]


def parse_shoal_load(text):
    """The last JSON line our generator printed: responses/s and per-kind rates."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            return {"responses_per_sec": r["responses_per_sec"], "by_kind": r["by_kind"],
                    "generator": r.get("config", {})}
    return {}


def parse_load(text):
    """The load tester's final average, and the mean of its periodic per-kind figures."""
    out = {}
    m = re.search(r"Average responses per second: ([\d.]+)", text)
    if m:
        out["responses_per_sec"] = float(m.group(1))
    report = text.split("load test report", 1)
    kinds = {}
    # UDP prints the breakdown under the final average; WS only in its periodic reports.
    scope = report[1] if len(report) > 1 and "Connect responses" in report[1] else report[0]
    for kind, value in re.findall(r"- (\w+) responses:\s+([\d.]+)", scope):
        kinds.setdefault(kind.lower(), []).append(float(value))
    out["by_kind"] = {k: round(statistics.mean(v), 1) for k, v in kinds.items()}
    return out


def throughput(proto, name, make_cmd, args, work, outdir, tag):
    port = next(PORTS)
    if args.loadgen == "shoal":
        load_cmd = shoal_load_cmd(proto, args, port)
    else:
        tool, cfg = load_config(proto, args, work, port)
        load_cmd = [tool, "-c", cfg]
    with Server(name, make_cmd(args, work, port), outdir, port, proto == "udp") as server:
        pid = server.proc.pid
        t0, c0 = time.time(), cpu_ticks(pid)
        # The generator is the only child waited for here: its CPU time says whether it, not
        # the server, was the limit (a share near 1.0 of core 1).
        g0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out_path = os.path.join(outdir, "%s-%s-%s.txt" % (proto, name, tag))
        with open(out_path, "w") as f:
            subprocess.run(["taskset", "-c", "1", "timeout", str(args.secs + 60)] + load_cmd,
                           stdout=f, stderr=subprocess.STDOUT)
        wall, cpu = time.time() - t0, (cpu_ticks(pid) - c0) / CLK_TCK
        g1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        gen_cpu = g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime
        rss = rss_kib(pid)
    with open(out_path, errors="replace") as f:
        result = (parse_shoal_load if args.loadgen == "shoal" else parse_load)(f.read())
    result.update(server_cpu_share=round(cpu / wall, 2), loadgen_cpu_share=round(gen_cpu / wall, 2),
                  server_rss_kib=rss, log=os.path.basename(out_path))
    if "responses_per_sec" in result and cpu > 0:
        # Under a busy machine the server may not get all of core 0: responses per CPU second
        # moves less with other load than responses per wall second.
        result["responses_per_cpu_sec"] = round(result["responses_per_sec"] * wall / cpu)
    return result


# --- memory per idle connection -------------------------------------------------------------


def memory(name, make_cmd, args, work, outdir):
    counts = sorted(int(c) for c in args.conns.split(","))
    port = next(PORTS)
    with Server(name, make_cmd(args, work, port), outdir, port, False) as server:
        out_path = os.path.join(outdir, "memory-%s.json" % name)
        cmd = ["taskset", "-c", "1", sys.executable, os.path.join(HERE, "ws_idle.py"),
               "--port", str(port), "--pid", str(server.proc.pid), "--counts",
               ",".join(map(str, counts)), "--out", out_path]
        subprocess.run(["timeout", "600"] + cmd, check=False)
        try:
            with open(out_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"error": "ws_idle.py wrote no result"}


# --- main --------------------------------------------------------------------------------------


def versions(args):
    v = {"shoal": os.path.basename(args.shoal) + " (this tree, release)"}
    for tool in ("aquatic_udp", "aquatic_ws", "aquatic_udp_load_test", "aquatic_ws_load_test"):
        if have(tool):
            v[tool] = run_out([tool, "--version"]) or "?"
    if bt_available():
        with open(os.path.join(REPO, "tests/web/node_modules/bittorrent-tracker/package.json")) as f:
            v["bittorrent-tracker"] = json.load(f)["version"]
        v["node"] = run_out(["node", "--version"])
    v["openssl"] = run_out(["openssl", "version"])
    return v


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "loadavg": os.getloadavg(), "rmem_max": run_out(["sysctl", "-n", "net.core.rmem_max"])}


def fmt(x):
    return "-" if x is None else ("%.0f" % x if x >= 100 else "%.2f" % x)


def table(results):
    lines = ["| protocol | server | responses/s (median) | Shoal ÷ this | responses per server CPU s | server CPU share | load generator CPU share | errors/s | server RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for proto in ("udp", "wss"):
        runs = results.get(proto, {})
        med = {n: statistics.median([r["responses_per_sec"] for r in rs if "responses_per_sec" in r] or [0])
               for n, rs in runs.items()}
        for name, rs in runs.items():
            ok = [r for r in rs if "responses_per_sec" in r]
            if not ok:
                lines.append("| %s | %s | failed | | | | | | |" % (proto, name))
                continue
            base = med.get("shoal") or 0
            cpu = statistics.median([r.get("responses_per_cpu_sec", 0) for r in ok])
            share = statistics.median([r.get("server_cpu_share", 0) for r in ok])
            gen = statistics.median([r.get("loadgen_cpu_share", 0) for r in ok])
            err = statistics.median([r["by_kind"].get("error", 0) for r in ok])
            rss = statistics.median([r["server_rss_kib"] for r in ok]) / 1024
            ratio = base / med[name] if med[name] else None
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
                proto, name, fmt(med[name]), fmt(ratio), fmt(cpu), fmt(share), fmt(gen), fmt(err), rss))
    mem = results.get("memory", {})
    if mem:
        lines += ["", "| server | connections | RSS growth MiB | bytes per connection |", "|---|---|---|---|"]
        for name, m in mem.items():
            for point in m.get("points", []):
                lines.append("| %s | %d | %.1f | %d |" % (
                    name, point["connections"], point["growth_kib"] / 1024, point["bytes_per_connection"]))
            if "error" in m:
                lines.append("| %s | failed: %s | | |" % (name, m["error"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shoal", required=True, help="Shoal's tracker example binary")
    ap.add_argument("--secs", type=int, default=30, help="seconds per load run (default 30)")
    ap.add_argument("--rounds", type=int, default=1, help="times every server is measured, interleaved")
    ap.add_argument("--only", default="udp,wss,memory", help="parts to run (default udp,wss,memory)")
    ap.add_argument("--servers", default="shoal,aquatic,bittorrent-tracker", help="servers to run")
    ap.add_argument("--conns", default="1000,10000", help="idle connection counts for the memory part")
    ap.add_argument("--loadgen", choices=("aquatic", "shoal"), default="aquatic",
                    help="load generator of the throughput parts (default aquatic)")
    ap.add_argument("--loadgen-bin", help="our load generator (the loadgen example; run.sh builds it)")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    ap.add_argument("--out", default=os.path.join(target, "bench-tracker"),
                    help="results folder (default: target/bench-tracker)")
    args = ap.parse_args()
    if args.loadgen == "shoal" and not (args.loadgen_bin and os.access(args.loadgen_bin, os.X_OK)):
        ap.error("--loadgen shoal needs --loadgen-bin (the loadgen example binary)")
    only, servers = set(args.only.split(",")), set(args.servers.split(","))
    # SIGTERM unwinds like an error, so the server and load tester in flight are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("tracker-bench: terminated"))

    # 10,000 connections need as many descriptors, in this process's children too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(args.out, stamp)
    os.makedirs(outdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tracker-bench-")
    args.key, args.key8, args.cert = (os.path.join(work, n) for n in ("key.pem", "key8.pem", "cert.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", args.key, "-out", args.cert],
                   check=True, capture_output=True)
    # aquatic_ws reads PKCS#8 keys only.
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", args.key, "-out", args.key8], check=True)

    results = {"started": stamp, "command": sys.argv, "secs": args.secs, "rounds": args.rounds,
               "loadgen": args.loadgen, "machine": machine(), "versions": versions(args)}
    if args.loadgen == "shoal":
        results["loadgen_args"] = SHOAL_LOAD
    for proto, tool in (("udp", "aquatic_udp_load_test"), ("wss", "aquatic_ws_load_test")):
        if proto not in only:
            continue
        if args.loadgen == "aquatic" and not have(tool):
            log("SKIP: %s not installed (%s runs)" % (tool, proto))
            continue
        runs = results.setdefault(proto, {})
        for rnd in range(args.rounds):
            for name, make_cmd, group, bin_ in SERVERS[proto]:
                if group not in servers:
                    continue
                if not available(name, bin_):
                    if rnd == 0:
                        log("SKIP: %s not installed" % name)
                    continue
                log("%s %s round %d: %d s of load" % (proto, name, rnd + 1, args.secs))
                try:
                    r = throughput(proto, name, make_cmd, args, work, outdir, "r%d" % (rnd + 1))
                except RuntimeError as e:
                    r = {"error": str(e)}
                log("  %s" % json.dumps(r))
                runs.setdefault(name, []).append(r)
    if "memory" in only:
        for name, make_cmd, group, bin_ in SERVERS["wss"]:
            if group not in servers or not available(name, bin_):
                continue
            log("memory %s: %s idle TLS WebSocket connections" % (name, args.conns))
            try:
                m = memory(name, make_cmd, args, work, outdir)
            except RuntimeError as e:
                m = {"error": str(e)}
            log("  %s" % json.dumps(m))
            results.setdefault("memory", {})[name] = m
    results["loadavg_after"] = os.getloadavg()
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    write(os.path.join(outdir, "table.md"), text + "\n")
    print(text)
    log("results in %s" % outdir)


if __name__ == "__main__":
    main()
