#!/usr/bin/python3
"""Browser playback benchmark (issue 6): magnet to first byte and to `canplay`, the Shoal web
engine against WebTorrent 3's page, side by side in one run, same seeder, same video.

  /usr/bin/python3 benches/web.py [--runs 5] [--seeders webtorrent,shoal] [--idle-ms MS] [--json-out FILE]

The video: a 30 s H.264/AAC MP4 at ~1 Mbit/s with its moov first (+faststart, as sites publish
video), made with ffmpeg. It is seeded by
  webtorrent  WebTorrent 3 in headless Chromium (tests/web/browser_peer.mjs seed), the reference
              case ("two Chromiums");
  shoal       native `shoal seed FILE --tracker WS` (a hybrid peer, as `shoal serve` runs),
and played, one fresh Chromium at a time, rounds interleaved, by
  shoal-app   the Shoal engine (tests/web/shoal_app_peer.mjs leech --play: web/shoal.js, its
              Service Worker and the wasm engine; web/pkg must be built: scripts/build-web.sh);
  wt-page     WebTorrent 3's page (tests/web/browser_peer.mjs leech --play: file.streamTo with
              WebTorrent's own Service Worker).
Both leechers find the seeder through one `shoal tracker --ws` and nothing else. Both create
their client first (--idle-ms before the add: a page someone pastes a magnet into). Times are
measured in the page from the call that adds the magnet (browser start-up excluded): first byte
= first payload byte received, canplay = the <video>'s `canplay` event. Medians per (seeder,
leecher), and the ratio shoal-app / wt-page per seeder. Every download is also checked by SHA-1.

WebRTC in Chromium needs an interface other than loopback, so the script re-executes itself in
a private network namespace (as benches/webrtc.py does).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from webrtc import NETNS_SETUP, Proc, version_of, npm_version  # noqa: E402

IN_NETNS = "SHOAL_WEB_BENCH_IN_NETNS"
WEB = os.path.join(REPO, "tests", "web")
LEECHERS = ("shoal-app", "wt-page")


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seeders", default="webtorrent,shoal")
    ap.add_argument("--seconds", type=int, default=30, help="length of the test video")
    ap.add_argument("--shoal", default=None, help="shoal binary [$CARGO_TARGET_DIR/release/shoal]")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--hard-limit", type=float, default=1800)
    ap.add_argument("--idle-ms", type=int, default=0,
                    help="each leecher's client exists this long before the magnet is added (a page "
                         "where someone pastes a link); 0 = added at once")
    return ap.parse_args()


def shoal_bin(args):
    if args.shoal:
        return args.shoal
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "release", "shoal")


def reexec_in_netns(args):
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    env = dict(os.environ, **{IN_NETNS: "1"})
    cmd = ["timeout", "-k", "10", str(int(args.hard_limit))] + unshare + \
        ["sh", "-c", NETNS_SETUP, "sh", sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    os.execvpe(cmd[0], cmd, env)


def make_video(path, seconds):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=%d" % seconds,
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=%d" % seconds,
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", "1000k",
                    "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-shortest", path],
                   check=True, timeout=300)


def sha1(path):
    import hashlib
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    args = parse_args()
    if os.environ.get(IN_NETNS) != "1":
        reexec_in_netns(args)
    shoal = shoal_bin(args)
    if not os.path.exists(os.path.join(REPO, "web", "pkg", "shoal_web_bg.wasm")):
        sys.exit("web/pkg is not built: scripts/build-web.sh")
    work = tempfile.mkdtemp(prefix="shoal-web-bench-")
    log_dir = os.path.join(work, "logs")
    os.makedirs(log_dir)
    seeders = [s for s in args.seeders.split(",") if s]
    t_start = time.monotonic()
    procs = []
    rows = []
    try:
        tracker = Proc("tracker", [shoal, "tracker", "--ws", "127.0.0.1:0", "--json"], log_dir, args.hard_limit)
        procs.append(tracker)
        _, ready = tracker.wait_event(["ready"], 30)
        ws = ready["ws"]
        magnets = {}
        files = {}
        for s in seeders:
            d = os.path.join(work, "seed-" + s)
            os.makedirs(d)
            path = os.path.join(d, "bench-%s.mp4" % s)  # own name: the torrents differ
            make_video(path, args.seconds)
            files[s] = (path, sha1(path))
            if s == "shoal":
                p = Proc("seed-shoal", [shoal, "seed", path, "--tracker", ws, "--listen", "127.0.0.1:0", "--json"],
                         log_dir, args.hard_limit)
                procs.append(p)
                _, started = p.wait_event(["started"], 60)
                p.wait_event(["seeding"], 60)
                magnets[s] = started["magnet"]
            else:
                p = Proc("seed-webtorrent", ["node", os.path.join(WEB, "browser_peer.mjs"), "seed", path, "--announce", ws,
                                             "--max-seconds", str(int(args.hard_limit))], log_dir, args.hard_limit, cwd=WEB)
                procs.append(p)
                _, ready = p.wait_event(["ready"], 120)
                magnets[s] = ready["magnet"]
        for rep in range(args.runs):
            for s in seeders:
                order = LEECHERS if rep % 2 == 0 else tuple(reversed(LEECHERS))
                for leecher in order:
                    rows.append(leech(leecher, s, magnets[s], files[s][1], ws, rep, log_dir, work,
                                      args.idle_ms))
    finally:
        for p in reversed(procs):
            p.stop()
    summary = {}
    for s in seeders:
        for leecher in LEECHERS:
            ok = [r for r in rows if r["seeder"] == s and r["leecher"] == leecher and r["ok"]]
            summary["%s/%s" % (s, leecher)] = {
                "runs_ok": len(ok),
                "first_byte_p50": med([r["first_byte"] for r in ok]),
                "canplay_p50": med([r["canplay"] for r in ok]),
            }
    ratios = {}
    for s in seeders:
        a, b = summary["%s/shoal-app" % s], summary["%s/wt-page" % s]
        ratios[s] = {k: (a[k] / b[k] if a[k] and b[k] else None) for k in ("first_byte_p50", "canplay_p50")}
    result = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable] + sys.argv,
        "runs": args.runs, "video_seconds": args.seconds,
        "versions": {"shoal": version_of([shoal, "--version"]), "webtorrent": npm_version("webtorrent"),
                     "chromium": version_of(["/usr/bin/chromium", "--version"])},
        "machine": {"cpus": os.cpu_count(), "load_after": os.getloadavg()},
        "duration_s": time.monotonic() - t_start,
        "summary": summary, "ratios": ratios, "rows": rows, "logs": log_dir,
    }
    out = args.json_out or os.path.join(work, "web-bench.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("%-24s %6s %14s %12s" % ("seeder/leecher", "ok", "first byte p50", "canplay p50"))
    for k, v in summary.items():
        print("%-24s %6d %14s %12s" % (k, v["runs_ok"], fmt(v["first_byte_p50"]), fmt(v["canplay_p50"])))
    for s, r in ratios.items():
        print("ratio shoal-app / wt-page behind %s: first byte %s, canplay %s" % (s, fmt(r["first_byte_p50"]), fmt(r["canplay_p50"])))
    print("results in", out)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


def leech(leecher, seeder, magnet, want, ws, rep, log_dir, work, idle_ms):
    name = "%s-from-%s-%d" % (leecher, seeder, rep)
    common = ["--announce", ws, "--play", "--timeout", "120", "--max-seconds", "300", "--idle-ms", str(idle_ms)]
    if leecher == "shoal-app":
        argv = ["node", os.path.join(WEB, "shoal_app_peer.mjs"), "leech", magnet] + common
    else:
        out = os.path.join(work, name)
        argv = ["node", os.path.join(WEB, "browser_peer.mjs"), "leech", magnet, out] + common
    p = Proc(name, argv, log_dir, 320, cwd=WEB)
    row = {"seeder": seeder, "leecher": leecher, "rep": rep, "ok": False, "first_byte": None, "canplay": None}
    try:
        _, done = p.wait_event(["done"], 300)
        row["first_byte"] = done.get("first_byte_seconds")
        row["canplay"] = done.get("canplay_seconds")
        if done.get("timeline"):
            row["timeline"] = done["timeline"]  # [ms, bytes, readyState] until canplay
        row["ok"] = done.get("sha1") == want and row["canplay"] is not None
        if done.get("sha1") != want:
            row["error"] = "sha1 %s != %s" % (done.get("sha1"), want)
    except RuntimeError as e:
        row["error"] = str(e)
    finally:
        p.stop()
    log("%-30s first byte %s s, canplay %s s%s" % (name, fmt(row["first_byte"]), fmt(row["canplay"]),
                                                  "" if row["ok"] else "  FAILED: %s" % row.get("error")))
    return row


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=3):
    return "-" if x is None else ("%.*f" % (digits, x))


if __name__ == "__main__":
    main()
