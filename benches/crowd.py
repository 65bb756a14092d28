#!/usr/bin/python3
"""Crowd benchmark (issue 22): a crowd of browsers opens one `shoal serve` link together; what
it costs the origin and how long the viewers wait.

  /usr/bin/python3 benches/crowd.py [--viewers 6] [--stagger 0.5] [--watch 25] [--runs 1]
                                    [--configs spread-cap,nospread-cap,spread-nocap] [--cap 2MiB]
                                    [--shoal-arg=...] [--shoal-bin PATH] [--json FILE]

In a fresh network namespace (lo plus a veth address, as benches/webrtc.py makes: WebRTC in
Chromium needs more than loopback), per run and configuration:
  origin   `shoal serve VIDEO --http 127.0.0.1:0 --json` plus the configuration's flags
           (spread-cap: `--max-upload-rate CAP`; nospread-cap: `--max-upload-rate CAP
           --no-spread`; spread-nocap: none; every --shoal-arg is added to all), run as its
           own uid (`setpriv --reuid=U --regid=U --clear-groups`); an nftables table counts
           every byte that uid sends (`meta skuid U counter`), TCP (app, web seed, tracker)
           and UDP (WebRTC) apart.
  viewers  one headless Chromium (benches/crowd.mjs, playwright-core from tests/web), one
           browser context per viewer (own storage and Service Worker, empty cache), opening
           the printed app link `--stagger` s apart; each is closed `--watch` s after its
           navigation started.
Before the crowd, one more fresh context loads the app without a link (page, engine, Service
Worker, no video): the origin's bytes meanwhile are one page load. The uid cannot tell the app's
files from the web seed (same process, same port), so the crowd's video bytes are estimated as
(all bytes during the crowd) - viewers x (one page load); Playwright's count of the web seed
responses the pages received is reported beside it.

Per viewer (times from its navigation start, the page's timeOrigin): the first `playing` event,
the first time currentTime > 0, stalls (`waiting` events after the first `playing`, with their
length until the next `playing`; one still open at the end counts until then), sampled frozen
time (playing, not ended, currentTime not moving), and whether currentTime advanced; from the
engine: bytes downloaded, from the web seed, uploaded to other viewers, peers.

The video: a 60 s 854x480 H.264/AAC MP4 with its moov first (~7 MiB, ~1 Mbit/s), made once
with ffmpeg into --cache-dir, or --video FILE. Needs root (unshare, nft, setpriv), node,
Debian's Chromium, tests/web's npm packages, and a shoal binary built after web/pkg
(scripts/build-web.sh; `shoal serve` embeds the app at build time).
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from webrtc import NETNS_SETUP, Proc, npm_version, version_of  # noqa: E402

IN_NETNS = "SHOAL_CROWD_BENCH_IN_NETNS"
DRIVER = os.path.join(HERE, "crowd.mjs")
TABLE = "shoal_crowd"
CONFIGS = {
    "spread-cap": lambda cap: ["--max-upload-rate", cap],
    "nospread-cap": lambda cap: ["--max-upload-rate", cap, "--no-spread"],
    "spread-nocap": lambda cap: [],
    "nospread-nocap": lambda cap: ["--no-spread"],
}
MiB = 1 << 20


def log(*parts):
    print("[crowd-bench %s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--viewers", type=int, default=6)
    ap.add_argument("--stagger", type=float, default=0.5, help="seconds between two viewers opening the link")
    ap.add_argument("--watch", type=float, default=25, help="seconds each viewer stays, from its navigation")
    ap.add_argument("--runs", type=int, default=1, help="crowds per configuration (order rotates every run)")
    ap.add_argument("--configs", default="spread-cap,nospread-cap,spread-nocap",
                    help="comma list of: " + ", ".join(CONFIGS))
    ap.add_argument("--cap", default="2MiB", help="--max-upload-rate of the *-cap configurations")
    ap.add_argument("--shoal-arg", action="append", default=[], help="extra flag for `shoal serve` (repeatable)")
    ap.add_argument("--shoal-bin", default=None, help="[$CARGO_TARGET_DIR/release/shoal]")
    ap.add_argument("--video", default=None, help="the video to serve [made with ffmpeg, cached]")
    ap.add_argument("--cache-dir", default=os.path.join(REPO, "target", "bench-crowd"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromium-arg", action="append", default=[], help="extra flag for Chromium (repeatable)")
    ap.add_argument("--uid", type=int, default=64521, help="the uid shoal serve runs as (unused by anyone else)")
    ap.add_argument("--json", default=None, help="results file [CACHE_DIR/results-<time>.json]")
    ap.add_argument("--hard-limit", type=float, default=0,
                    help="bound on the whole run in s [0: computed from runs, configs and watch]")
    args = ap.parse_args()
    args.configs = [c for c in args.configs.split(",") if c]
    bad = [c for c in args.configs if c not in CONFIGS]
    if bad or not args.configs:
        ap.error("unknown configuration(s) %s; known: %s" % (bad, ", ".join(CONFIGS)))
    if not (1 <= args.viewers <= 64) or args.stagger < 0 or args.watch <= 0 or args.runs < 1:
        ap.error("--viewers 1..64, --stagger >= 0, --watch > 0, --runs >= 1")
    if not args.hard_limit:
        per_crowd = 90 + args.viewers * args.stagger + args.watch
        args.hard_limit = 300 + args.runs * len(args.configs) * per_crowd
    return args


def shoal_bin(args):
    if args.shoal_bin:
        return os.path.abspath(args.shoal_bin)
    target = os.environ.get("CARGO_TARGET_DIR", "/var/cache/shoal-target")
    return os.path.join(target, "release", "shoal")


# ---- outside the namespace -------------------------------------------------------------------

def make_video(path):
    tmp = path + ".tmp.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=60",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    "-b:v", "880k", "-maxrate", "1200k", "-bufsize", "1760k",
                    "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-shortest", tmp],
                   check=True, timeout=600)
    os.replace(tmp, path)


def prepare(args):
    missing = []
    if os.geteuid() != 0:
        missing.append("root (unshare -n, nft, setpriv --reuid)")
    for tool in ("unshare", "nft", "setpriv", "node", "ip", "timeout"):
        if not shutil.which(tool):
            missing.append(tool)
    shoal = shoal_bin(args)
    if not os.access(shoal, os.X_OK):
        missing.append("the shoal binary at %s (cargo build --release -p shoal-cli)" % shoal)
    if not os.path.exists(args.chromium):
        missing.append("Chromium at %s" % args.chromium)
    if not os.path.isdir(os.path.join(REPO, "tests", "web", "node_modules", "playwright-core")):
        missing.append("tests/web/node_modules (cd tests/web && npm ci --ignore-scripts)")
    if missing:
        sys.exit("crowd.py needs: " + "; ".join(missing))
    if not args.video:
        os.makedirs(args.cache_dir, exist_ok=True)
        args.video = os.path.join(args.cache_dir, "crowd-60s.mp4")
        if not os.path.exists(args.video):
            log("making the test video", args.video)
            make_video(args.video)
    args.video = os.path.abspath(args.video)


def reexec_in_netns(args):
    env = dict(os.environ, **{IN_NETNS: "1"})
    argv = [a for a in sys.argv[1:]]
    argv += ["--video", args.video, "--hard-limit", str(int(args.hard_limit))]
    cmd = ["timeout", "-k", "10", str(int(args.hard_limit)), "unshare", "-n",
           "sh", "-c", NETNS_SETUP, "sh", sys.executable, os.path.abspath(__file__)] + argv
    os.execvpe(cmd[0], cmd, env)


# ---- byte counters ---------------------------------------------------------------------------

def nft(*argv, check=True):
    return subprocess.run(["nft"] + list(argv), capture_output=True, text=True, timeout=30, check=check)


def counters_up(uid):
    nft("add", "table", "inet", TABLE)
    nft("add", "chain", "inet", TABLE, "out", "{ type filter hook output priority 0; policy accept; }")
    for proto in ("tcp", "udp"):
        nft("add", "rule", "inet", TABLE, "out", "meta", "skuid", str(uid), "meta", "l4proto", proto,
            "counter", "comment", '"%s"' % proto)
    nft("add", "rule", "inet", TABLE, "out", "meta", "skuid", str(uid), "counter", "comment", '"all"')


def counters_down():
    nft("delete", "table", "inet", TABLE, check=False)


def read_counters():
    """{'tcp': bytes, 'udp': bytes, 'all': bytes} sent by the uid so far (IP packets)."""
    out = json.loads(nft("-j", "list", "chain", "inet", TABLE, "out").stdout)
    got = {}
    for item in out.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                got[rule.get("comment", "?")] = expr["counter"]["bytes"]
    return got


def diff(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in b}


# ---- one crowd -------------------------------------------------------------------------------

def crowd(args, shoal, config, rep, video_size, log_dir, work):
    name = "%s-%d" % (config, rep)
    serve_args = CONFIGS[config](args.cap) + args.shoal_arg
    run_dir = os.path.join(work, name)
    os.makedirs(run_dir)
    video = os.path.join(run_dir, os.path.basename(args.video))
    shutil.copyfile(args.video, video)
    for p in (run_dir, video):
        os.chown(p, args.uid, args.uid)
    os.chmod(run_dir, 0o755)
    row = {"config": config, "rep": rep, "serve_args": serve_args, "ok": False}
    limit = 120 + args.viewers * args.stagger + args.watch
    procs = []
    try:
        serve = Proc("serve-" + name,
                     ["env", "HOME=" + run_dir, "TMPDIR=" + run_dir,
                      "setpriv", "--reuid=%d" % args.uid, "--regid=%d" % args.uid, "--clear-groups",
                      "--pdeathsig", "KILL", "--",
                      shoal, "serve", video, "--http", "127.0.0.1:0", "--json"] + serve_args,
                     log_dir, limit, cwd=run_dir)
        procs.append(serve)
        _, serving = serve.wait_event(["serving"], 60)
        if not serving.get("engine_built"):
            raise RuntimeError("this shoal binary has no browser engine: scripts/build-web.sh, then rebuild shoal")
        row["serving"] = {k: serving.get(k) for k in ("url", "webrtc", "listen")}
        app_url = serving["files"][0]["app_url"]
        driver = Proc("browser-" + name,
                      ["node", DRIVER, "--url", app_url, "--base", serving["url"], "--viewers", str(args.viewers),
                       "--stagger", str(args.stagger), "--watch", str(args.watch), "--chromium", args.chromium,
                       "--max-seconds", str(int(limit))] + ["--chromium-arg=" + a for a in args.chromium_arg],
                      log_dir, limit + 10, cwd=HERE)
        procs.append(driver)
        driver.wait_event(["launched"], 60)
        time.sleep(1)  # the serve's own start-up traffic (its announce) is over
        c0 = read_counters()
        send(driver, "prime")
        _, primed = driver.wait_event(["primed"], 60)
        time.sleep(0.5)
        c1 = read_counters()
        page = diff(c0, c1)
        row["page_load"] = {"origin_bytes": page, "seconds": primed.get("seconds"), "http": primed.get("http")}
        send(driver, "crowd")
        seen = []
        _, done = driver.wait_event(["crowd_done"], args.viewers * args.stagger + args.watch + 60, seen=seen)
        c2 = read_counters()
        row["serve_cpu_s"] = serve.cpu_seconds()  # whole life of the process, start-up hashing included
        viewers = sorted((ev for _, ev in seen if ev.get("event") == "viewer"), key=lambda v: v["viewer"])
        sent = diff(c1, c2)
        pages = args.viewers * page.get("all", 0)
        webseed_pw = sum(v.get("http", {}).get("webseed", {}).get("body", 0) for v in viewers)
        webseed_used = sum((v.get("status") or {}).get("webSeedDownloaded") or 0 for v in viewers)
        row.update({
            "origin_bytes": sent,
            "origin_x_video": sent.get("all", 0) / video_size,
            "pages_bytes_est": pages,
            "video_bytes_est": sent.get("all", 0) - pages,
            "video_x_video": (sent.get("all", 0) - pages) / video_size,
            "udp_x_video": sent.get("udp", 0) / video_size,
            "webseed_body_bytes_playwright": webseed_pw,
            "webseed_used_bytes": webseed_used,
            "viewers": viewers,
            "viewers_ok": sum(1 for v in viewers if v.get("ok")),
            "ok": len(viewers) == args.viewers,
        })
    except RuntimeError as e:
        row["error"] = str(e)
        log("%s FAILED: %s" % (name, e))
    finally:
        for p in reversed(procs):
            if p is procs[0]:
                procs_signal(p, signal.SIGTERM)  # shoal serve stops on a signal, not on stdin
                try:  # its last word: what each torrent sent and how spreading decided
                    _, stopped = p.wait_event(["stopped"], 10)
                    row["origin_stats"] = (stopped.get("torrents") or [{}])[0]
                except RuntimeError:
                    pass
            p.stop(grace_s=10)
    log_row(row, video_size)
    return row


def send(proc, line):
    proc.proc.stdin.write((line + "\n").encode())
    proc.proc.stdin.flush()


def procs_signal(p, sig):
    if p.proc.poll() is None:
        try:
            os.kill(p.pid, sig)  # the `timeout` wrapper we spawned; it forwards the signal
        except ProcessLookupError:
            pass


# ---- report ----------------------------------------------------------------------------------

def fmt(x, digits=2, unit=""):
    return "-" if x is None else "%.*f%s" % (digits, x, unit)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def log_row(row, video_size):
    if "origin_bytes" not in row:
        return
    st = row.get("origin_stats") or {}
    log("%s-%d: origin %.2f MiB = %.2f x video (page loads ~%.2f MiB; video part %.2f x); viewers playing %d/%d;"
        " origin's engine: uploaded %.2f MiB, refused %s requests, granted %s pieces when asked again" % (
            row["config"], row["rep"], row["origin_bytes"].get("all", 0) / MiB, row["origin_x_video"],
            row["pages_bytes_est"] / MiB, row["video_x_video"], row["viewers_ok"], len(row["viewers"]),
            (st.get("uploaded") or 0) / MiB, st.get("spread_refused", "-"), st.get("spread_granted_again", "-")))


def print_tables(rows, video_size):
    print("\nvideo %.2f MiB; origin bytes = IP bytes sent by shoal serve's uid (nftables), crowd only" % (video_size / MiB))
    head = ("config", "run", "origin MiB", "x video", "UDP x", "page MiB", "video-part x", "webseed MiB",
            "ws used", "playing p50", "playing max", "stalls", "stall s", "advanced")
    print("%-15s %3s %10s %7s %6s %8s %12s %11s %7s %11s %11s %6s %7s %8s" % head)
    for r in rows:
        if "origin_bytes" not in r:
            print("%-15s %3d  FAILED: %s" % (r["config"], r["rep"], r.get("error")))
            continue
        vs = r["viewers"]
        playing = [v.get("to_playing_s") for v in vs]
        print("%-15s %3d %10.2f %7.2f %6.2f %8.2f %12.2f %11.2f %7.2f %11s %11s %6d %7.1f %5d/%-2d" % (
            r["config"], r["rep"], r["origin_bytes"].get("all", 0) / MiB, r["origin_x_video"], r["udp_x_video"],
            r["page_load"]["origin_bytes"].get("all", 0) / MiB, r["video_x_video"],
            r["webseed_body_bytes_playwright"] / MiB, r["webseed_used_bytes"] / MiB,
            fmt(med(playing)), fmt(max([p for p in playing if p is not None], default=None)),
            sum(v.get("stalls", 0) for v in vs), sum(v.get("stall_s", 0) for v in vs),
            sum(1 for v in vs if v.get("advanced")), len(vs)))
    print("\nper viewer: opened (s after the first), time to `playing` and to currentTime > 0 (s from its navigation),"
          " stalls (count/s), frozen s (sampled), media time at the end; MiB the web seed sent it (Playwright) / the engine"
          " kept from the web seed / downloaded / uploaded to other viewers; peers at the end")
    for r in rows:
        for v in r.get("viewers", []):
            st = v.get("status") or {}
            mib = lambda k: fmt((st.get(k) or 0) / MiB, 1)  # noqa: E731
            print("  %-15s %d v%d  opened %5s  playing %6s  advance %6s  stalls %d/%5s  frozen %5s  t %5s  "
                  "ws %s/%s dl %s up %s  peers %s%s" % (
                      r["config"], r["rep"], v["viewer"], fmt(v.get("opened_at"), 1), fmt(v.get("to_playing_s")),
                      fmt(v.get("to_advance_s")), v.get("stalls", 0), fmt(v.get("stall_s"), 1), fmt(v.get("frozen_s"), 1),
                      fmt(v.get("media_time_end"), 1),
                      fmt(v.get("http", {}).get("webseed", {}).get("body", 0) / MiB, 1), mib("webSeedDownloaded"), mib("downloaded"), mib("uploaded"),
                      st.get("peers", "-"), "" if v.get("ok") else "  NOT PLAYING %s" % (v.get("error") or v.get("notices") or "")))


def print_summary(rows, configs):
    print("\nmedians over runs (per crowd: origin x video, video part x video, viewers' median and worst time to"
          " playing, stalls and stalled s summed over the viewers)")
    for c in configs:
        ok = [r for r in rows if r["config"] == c and "origin_bytes" in r]
        if not ok:
            continue
        playing = [[v.get("to_playing_s") for v in r["viewers"]] for r in ok]
        print("  %-15s runs %d  origin %s x  video part %s x  playing p50 %s s  max %s s  stalls %s  stalled %s s"
              "  advanced %d/%d" % (
                  c, len(ok), fmt(med([r["origin_x_video"] for r in ok])), fmt(med([r["video_x_video"] for r in ok])),
                  fmt(med([med(p) for p in playing])), fmt(med([max([x for x in p if x is not None], default=None)
                                                                 for p in playing])),
                  fmt(med([sum(v.get("stalls", 0) for v in r["viewers"]) for r in ok]), 1),
                  fmt(med([sum(v.get("stall_s", 0) for v in r["viewers"]) for r in ok]), 1),
                  sum(r["viewers_ok"] for r in ok), sum(len(r["viewers"]) for r in ok)))


def main():
    args = parse_args()
    if os.environ.get(IN_NETNS) != "1":
        prepare(args)
        reexec_in_netns(args)
    shoal = shoal_bin(args)
    video_size = os.path.getsize(args.video)
    os.makedirs(args.cache_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = tempfile.mkdtemp(prefix="shoal-crowd-")
    os.chmod(work, 0o755)
    log_dir = os.path.join(args.cache_dir, "logs-" + stamp)
    os.makedirs(log_dir)
    load_before = os.getloadavg()
    t_start = time.monotonic()
    rows = []
    counters_down()
    try:
        counters_up(args.uid)
        for rep in range(args.runs):
            k = rep % len(args.configs)
            for config in args.configs[k:] + args.configs[:k]:
                log("run %d/%d: %s" % (rep + 1, args.runs, config))
                rows.append(crowd(args, shoal, config, rep, video_size, log_dir, work))
                time.sleep(1)
    finally:
        counters_down()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable] + sys.argv,
        "args": {k: v for k, v in vars(args).items()},
        "video": {"path": args.video, "bytes": video_size},
        "versions": {"shoal": version_of([shoal, "--version"]), "chromium": version_of([args.chromium, "--version"]),
                     "playwright-core": npm_version("playwright-core")},
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()},
        "duration_s": time.monotonic() - t_start,
        "rows": rows, "logs": log_dir,
    }
    out = args.json or os.path.join(args.cache_dir, "results-%s.json" % stamp)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print_tables(rows, video_size)
    print_summary(rows, args.configs)
    print("\nload average before %s, after %s; results in %s, logs in %s" % (
        " ".join("%.2f" % x for x in load_before), " ".join("%.2f" % x for x in os.getloadavg()), out, log_dir))
    sys.exit(0 if rows and all(r["ok"] and r.get("viewers_ok") == args.viewers for r in rows) else 1)


if __name__ == "__main__":
    main()
