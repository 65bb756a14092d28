#!/usr/bin/python3
"""CPU per thread while another benchmark runs: where a browser leecher's time goes.

  /usr/bin/python3 benches/thread_cpu.py [--mb 104.9] [--json-out FILE] -- COMMAND...

e.g. (the WebRTC section of docs/BENCHMARKS.md, two downloads of 52.4 MB):

  /usr/bin/python3 benches/thread_cpu.py --mb 104.9 -- \\
      /usr/bin/python3 benches/webrtc.py --runs 2 --no-warmup --only shoal

Every 0.25 s it reads /proc/PID/task/TID/stat of every Chromium, node and shoal process (the
benchmarks' network namespaces share our PID namespace, so no need to enter them) and the UDP
counters of the namespace a shoal process runs in (/proc/PID/net/snmp). Only the intervals in
which Chromium's network-service I/O thread is busy (> 0.1 core) count: the transfers, not
browser start-up nor the harness reading the file back. Threads are grouped by process kind
(Chromium's --type, utility sub-type) and thread name; with --mb, seconds are also given per
MB moved in those intervals. Chromium rewrites its command line into argv[0], hence the
parsing of the whole joined line.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
BUSY_THREAD = "chromium:utility:NetworkService|Chrome_ChildIOT"
INTERVAL_S = 0.25


def process_kind(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            line = b" ".join(f.read().split(b"\0"))
    except OSError:
        return None
    exe = os.path.basename(line.split(b" ")[0].decode(errors="replace"))
    if "chrom" in exe:
        kind = re.search(rb"--type=(\S+)", line)
        sub = re.search(rb"--utility-sub-type=(\S+)", line)
        return "chromium:%s:%s" % (kind.group(1).decode() if kind else "browser",
                                   sub.group(1).decode().split(".")[-1] if sub else "")
    return exe if exe in ("node", "shoal") else None


def udp_counters(pid):
    try:
        with open("/proc/%s/net/snmp" % pid) as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        head, values = rows[0], rows[1]
        return {"udp|" + k: int(values[head.index(k)]) for k in ("InDatagrams", "RcvbufErrors")}
    except (OSError, IndexError, ValueError):
        return {}


def sample(threads):
    """Updates `threads` ((pid, tid) -> (group, ticks)); returns one shoal pid, if any."""
    shoal = None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        kind = process_kind(pid)
        if not kind:
            continue
        shoal = shoal or (pid if kind == "shoal" else None)
        try:
            tids = os.listdir("/proc/%s/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%s/task/%s/stat" % (pid, tid)) as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            threads[(pid, tid)] = (kind + "|" + name, int(fields[11]) + int(fields[12]))
    return shoal


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=None, help="MB moved during the run")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("a command to run is needed")
    child = subprocess.Popen(command)
    threads, snapshots = {}, []
    while True:
        shoal = sample(threads)
        snap = collections.Counter()
        for group, ticks in threads.values():
            snap[group] += ticks
        if shoal:
            snap.update(udp_counters(shoal))
        snapshots.append((time.monotonic(), snap))
        if child.poll() is not None:
            break
        time.sleep(INTERVAL_S)

    totals, busy_s = collections.Counter(), 0.0
    for (t0, a), (t1, b) in zip(snapshots, snapshots[1:]):
        if (b[BUSY_THREAD] - a[BUSY_THREAD]) / CLK_TCK / (t1 - t0) > 0.1:
            busy_s += t1 - t0
            for key in b:
                # Counters of a namespace only count while one of its shoal processes was seen.
                if key in a or not key.startswith("udp|"):
                    totals[key] += b[key] - a[key]
    print("busy seconds (transfers): %.2f" % busy_s)
    cpu = {k: v / CLK_TCK for k, v in totals.items() if not k.startswith("udp|")}
    chromium = sum(v for k, v in cpu.items() if k.startswith("chromium"))
    per_mb = (lambda v: "  %.4f s/MB" % (v / args.mb)) if args.mb else (lambda v: "")
    print("%8.2f s  all Chromium threads%s" % (chromium, per_mb(chromium)))
    for key, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])[:15]:
        share = seconds / busy_s if busy_s else 0.0
        print("%8.2f s  %.2f cores  %s%s" % (seconds, share, key, per_mb(seconds)))
    for key in ("udp|InDatagrams", "udp|RcvbufErrors"):
        if key in totals:
            print("%8d    %s%s" % (totals[key], key,
                                 "  %.1f per MB" % (totals[key] / args.mb) if args.mb else ""))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"command": command, "busy_s": busy_s, "mb": args.mb,
                       "cpu_s": cpu, "udp": {k: v for k, v in totals.items() if k.startswith("udp|")}},
                      f, indent=1)
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
