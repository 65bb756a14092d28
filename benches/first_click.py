#!/usr/bin/python3
"""First click benchmark (issue 23.4): from opening a link in a fresh browser to the video playing,
for the link `shoal serve` prints, a WebTorrent 3 page with the same magnet and seeder, and a
plain HTTP <video> of the same file from the same server (the floor).

  /usr/bin/python3 benches/first_click.py [--runs 3] [--pages shoal,wt3,plain] [--timeout 20]
                                          [--browser fresh|context] [--no-warmup] [--json FILE]

In a fresh network namespace (lo plus a veth address, as benches/webrtc.py makes: WebRTC in
Chromium needs more than loopback), one origin for the whole run:
  `shoal serve VIDEO --http 127.0.0.1:0 --json` (plus every --shoal-arg): the app, its WebSocket
  tracker, the web seed and the native hybrid seeder, as a user runs it. Its `serving` event
  gives the app link (`#magnet=...`), the magnet (with `ws=`, the web seed) and the trackers.
and three pages, each opened in a fresh headless Chromium (benches/first_click.mjs; --browser
context: one Chromium, a fresh browser context per page), rounds interleaved shoal, wt3, plain:
  shoal  the app link exactly as printed (the app autoplays; muted when Chromium refuses sound);
  wt3    a static page from a small HTTP server of this script on 127.0.0.1 (another port): WebTorrent
         3's browser bundle (tests/web/node_modules/webtorrent/dist/webtorrent.min.js) adds the
         same magnet, so the same seeder is found through the same tracker, and plays the file
         the way WebTorrent's pages do (its Service Worker sw.min.js, client.createServer,
         file.streamTo(<video autoplay muted>)), as tests/web/browser_peer.html does. The
         magnet is added at once; the Service Worker registers meanwhile. No ICE servers (the
         Shoal app has none by default; STUN servers cannot answer in the namespace and would
         only delay WebTorrent's non-trickle offers);
  plain  a static page `<video src=WEB_SEED_FILE_URL autoplay muted>`: the same file over plain
         HTTP from shoal serve's web seed route.
Measured the same way in every page, from its navigation start (performance.timeOrigin): the
first `playing` event of any media element (a capturing listener on the document, installed with
addInitScript before the page's scripts) and the first time currentTime > 0. A page that does not
play within --timeout s is a failure, kept as such (not a number). One untimed load of each page
first warms the server and the file cache (--no-warmup skips it). Each page is left (about:blank)
before its browser closes, so its WebRTC connections close cleanly: a browser killed outright can
leave the origin holding a dead peer for seconds, and spreading (`shoal serve`'s default) then
refuses the next page's first requests for pieces that peer holds (the report warns when the
origin refused anything).

Milestones, to take the time apart: for the shoal page (watching window.shoalApp, nothing in the
app changed) engine ready, magnet added, first peer, metadata, first byte from a peer / the web
seed, piece 0 and the first MiB verified, the Service Worker's first stream request; for wt3 the
same from WebTorrent's events; for all three the <video>'s events; and the SCTP retransmission
timeouts shoal serve logged (RUST_LOG from --origin-log) during each load. WebTorrent 3 takes a
single-file torrent's `ws=` as the file's own URL, so the folder URL shoal serve gives (BEP 19's
other form) fails for it (its requests are counted in the JSON): it gets the data over WebRTC.

Results: per-run times, medians, shoal/wt3 and shoal/plain, whether the issue's goal holds (shoal
median <= 0.5 s and <= 0.5 x wt3's median), versions; JSON in --cache-dir (target/bench-first-click).
Run it with /usr/bin/python3 (it shares benches/webrtc.py's helpers, which import Debian's
libtorrent). Needs root or user namespaces (unshare), node, Debian's Chromium, tests/web's npm
packages, ffmpeg (once, for the video) and a shoal binary built after web/pkg
(scripts/build-web.sh).
"""

import argparse
import datetime
import http.server
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from crowd import make_video, shoal_bin  # noqa: E402  (the same 60 s 854x480 H.264/AAC MP4, moov first)
from webrtc import NETNS_SETUP, Proc, npm_version, version_of  # noqa: E402

IN_NETNS = "SHOAL_FIRST_CLICK_IN_NETNS"
DRIVER = os.path.join(HERE, "first_click.mjs")
WT_DIST = os.path.join(REPO, "tests", "web", "node_modules", "webtorrent", "dist")
PAGES = ("shoal", "wt3", "plain")
GOAL_S = 0.5
GOAL_RATIO = 0.5

# Milestones shown per page (ms from navigation start): (column, where, key).
MARKS = {
    "shoal": [("html", "nav", "response_end"), ("dcl", "nav", "dom_content_loaded"),
              ("wasm", "res", "shoal_web_bg.wasm"), ("engine", "marks", "engine_ready"),
              ("added", "marks", "torrent_added"), ("sw", "marks", "sw_controls"),
              ("peer", "marks", "first_peer"), ("meta", "marks", "metadata"),
              ("byte", "marks", "first_byte"), ("b.peer", "marks", "first_byte_peer"),
              ("b.ws", "marks", "first_byte_webseed"), ("p0", "marks", "piece0"),
              ("1mib", "marks", "head_1mib"), ("sw.req", "marks", "sw_first_request"),
              ("lstart", "media", "loadstart"), ("lmeta", "media", "loadedmetadata"),
              ("canplay", "media", "canplay"), ("play", "media", "playing")],
    "wt3": [("html", "nav", "response_end"), ("dcl", "nav", "dom_content_loaded"),
            ("wt.js", "res", "webtorrent.min.js"), ("client", "marks", "client"),
            ("sw", "marks", "sw_ready"), ("peer", "marks", "first_peer_webrtc"),
            ("meta", "marks", "metadata"), ("ready", "marks", "torrent_ready"),
            ("wseed", "marks", "first_peer_webSeed"), ("b.peer", "marks", "first_byte_webrtc"), ("b.ws", "marks", "first_byte_webSeed"),
            ("sw.req", "marks", "sw_first_request"), ("lstart", "media", "loadstart"),
            ("lmeta", "media", "loadedmetadata"), ("canplay", "media", "canplay"),
            ("play", "media", "playing")],
    "plain": [("html", "nav", "response_end"), ("dcl", "nav", "dom_content_loaded"),
              ("lstart", "media", "loadstart"), ("lmeta", "media", "loadedmetadata"),
              ("canplay", "media", "canplay"), ("play", "media", "playing")],
}
# Where the time goes: consecutive milestones (columns above), each phase from the one before
# (the first from navigation start).
PHASES = {
    "shoal": ["engine", "added", "peer", "meta", "lstart", "lmeta", "play"],
    "wt3": ["client", "peer", "meta", "ready", "lstart", "lmeta", "play"],
    "plain": ["lstart", "lmeta", "play"],
}


def log(*parts):
    print("[first-click %s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed loads per page, rounds interleaved")
    ap.add_argument("--pages", default=",".join(PAGES), help="comma list of: " + ", ".join(PAGES))
    ap.add_argument("--timeout", type=float, default=20, help="s from navigation to `playing`; later is a failure")
    ap.add_argument("--after", type=float, default=3, help="s more, after `playing`, to see currentTime > 0")
    ap.add_argument("--gap", type=float, default=1.0, help="s between two loads (the closed page's peers leave)")
    ap.add_argument("--browser", choices=("fresh", "context"), default="fresh",
                    help="fresh: a new Chromium and profile per page; context: one Chromium, a new context per page")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed first load of each page")
    ap.add_argument("--no-marks", action="store_true", help="do not record the Shoal app's milestones")
    ap.add_argument("--shoal-arg", action="append", default=[], help="extra flag for `shoal serve` (repeatable)")
    ap.add_argument("--origin-log", default="warn,sctp_proto::association=debug",
                    help="RUST_LOG of shoal serve; its SCTP retransmission timeouts are counted per load ['' = off]")
    ap.add_argument("--shoal-bin", default=None, help="[$CARGO_TARGET_DIR, else /var/cache/shoal-target, /release/shoal]")
    ap.add_argument("--video", default=None, help="the video to serve [made with ffmpeg, cached]")
    ap.add_argument("--cache-dir", default=os.path.join(REPO, "target", "bench-first-click"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromium-arg", action="append", default=[], help="extra flag for Chromium (repeatable)")
    ap.add_argument("--json", default=None, help="results file [CACHE_DIR/results-<time>.json]")
    ap.add_argument("--hard-limit", type=float, default=0, help="bound on the whole run in s [0: from runs and timeout]")
    args = ap.parse_args()
    args.pages = [p for p in args.pages.split(",") if p]
    bad = [p for p in args.pages if p not in PAGES]
    if bad or not args.pages:
        ap.error("unknown page(s) %s; known: %s" % (bad, ", ".join(PAGES)))
    if args.runs < 1 or args.timeout <= 0 or args.after < 0 or args.gap < 0:
        ap.error("--runs >= 1, --timeout > 0, --after >= 0, --gap >= 0")
    if not args.hard_limit:
        loads = (args.runs + (0 if args.no_warmup else 1)) * len(args.pages)
        args.hard_limit = 180 + loads * (args.timeout + args.after + args.gap + 25)
    return args


# ---- outside the namespace -------------------------------------------------------------------

def prepare(args):
    missing = []
    for tool in ("unshare", "node", "ip", "timeout", "setpriv"):
        if not shutil.which(tool):
            missing.append(tool)
    shoal = shoal_bin(args)
    if not os.access(shoal, os.X_OK):  # the origin of every page
        missing.append("the shoal binary at %s (scripts/build-web.sh, then cargo build --release -p shoal-cli)" % shoal)
    if not os.path.exists(args.chromium):
        missing.append("Chromium at %s" % args.chromium)
    if not os.path.isdir(os.path.join(REPO, "tests", "web", "node_modules", "playwright-core")):
        missing.append("tests/web/node_modules (cd tests/web && npm ci --ignore-scripts)")
    if "wt3" in args.pages and not all(os.path.exists(os.path.join(WT_DIST, f)) for f in ("webtorrent.min.js", "sw.min.js")):
        missing.append("WebTorrent's browser bundle in %s (cd tests/web && npm ci)" % WT_DIST)
    if not args.video and not shutil.which("ffmpeg"):
        missing.append("ffmpeg (to make the test video once), or --video FILE")
    if missing:
        sys.exit("first_click.py needs: " + "; ".join(missing))
    if not args.video:
        os.makedirs(args.cache_dir, exist_ok=True)
        args.video = os.path.join(args.cache_dir, "first-click-60s.mp4")
        if not os.path.exists(args.video):
            log("making the test video", args.video)
            make_video(args.video)
    args.video = os.path.abspath(args.video)


def reexec_in_netns(args):
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    env = dict(os.environ, **{IN_NETNS: "1"})
    argv = sys.argv[1:] + ["--video", args.video, "--hard-limit", str(int(args.hard_limit))]
    cmd = ["timeout", "-k", "10", str(int(args.hard_limit))] + unshare + \
        ["sh", "-c", NETNS_SETUP, "sh", sys.executable, os.path.abspath(__file__)] + argv
    os.execvpe(cmd[0], cmd, env)


# ---- the static pages ------------------------------------------------------------------------

WT3_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>WebTorrent 3</title>
<video id="video" autoplay muted playsinline controls preload="auto"></video>
<script type="module">
// WebTorrent 3 as its own pages use it: the magnet is added at once, the Service Worker
// registers meanwhile, and the file streams into the <video> through it once both are ready.
import WebTorrent from '/webtorrent.min.js'
const MAGNET = %(magnet)s
const fc = window.__fc ?? { marks: {} }
const mark = k => { if (fc.marks[k] === undefined) fc.marks[k] = performance.now() }
const extra = fc.extra = { wires: [], warnings: [], error: null }
mark('script')
// No ICE servers, as the Shoal app by default (and tests/web/browser_peer.html).
const client = new WebTorrent({ tracker: { rtcConfig: { iceServers: [] } }, dht: false, lsd: false, utp: false })
client.on('error', e => { extra.error = String(e.message || e); console.error('webtorrent:', extra.error) })
mark('client')
const sw = navigator.serviceWorker.register('/sw.min.js', { scope: '/' })
  .then(() => navigator.serviceWorker.ready)
  .then(async registration => {
    if (!navigator.serviceWorker.controller) {
      await new Promise(resolve => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }))
    }
    mark('sw_ready')
    return registration
  })
const torrent = client.add(MAGNET)
mark('torrent_added')
torrent.on('warning', w => { if (extra.warnings.length < 10) extra.warnings.push(String(w.message || w)) })
torrent.on('wire', wire => {
  mark('first_peer')
  mark('first_peer_' + wire.type)
  extra.wires.push({ type: wire.type, at: Math.round(performance.now()) })
  wire.once('download', () => mark('first_byte_' + wire.type))
})
torrent.once('metadata', () => mark('metadata'))
torrent.once('download', () => mark('first_byte'))
const registration = await sw
if (!torrent.ready) await new Promise(resolve => torrent.once('ready', resolve))
mark('torrent_ready')
client.createServer({ controller: registration })
const file = torrent.files.find(f => /\\.(mp4|m4v|webm|mov|mkv|mp3|ogg)$/i.test(f.name)) ??
  torrent.files.reduce((a, b) => (a.length >= b.length ? a : b))
file.streamTo(document.getElementById('video'))
mark('stream_to')
</script>
"""

PLAIN_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>plain video</title>
<video src="%(src)s" autoplay muted playsinline controls preload="auto"></video>
"""


class StaticServer:
    """Serves a few files from memory on 127.0.0.1 (a secure context: Service Workers work)."""

    def __init__(self, files):
        self.files = files  # path -> (bytes, content type)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                body, kind = outer.files.get(path, (b"not found", None))
                self.send_response(200 if kind else 404)
                self.send_header("Content-Type", kind or "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def web_seed_file_url(serving):
    """The video's URL on shoal serve's web seed: the magnet's ws= (a folder) plus the name."""
    f = serving["files"][0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(f["magnet"]).query)
    folder = (query.get("ws") or [serving["url"] + "webseed/0/"])[0]
    if folder.endswith("/"):
        return folder + urllib.parse.quote(f["name"])
    return folder


# ---- running ---------------------------------------------------------------------------------

def send(proc, obj):
    proc.proc.stdin.write((json.dumps(obj) + "\n").encode())
    proc.proc.stdin.flush()


def load(driver, args, page, url, label):
    send(driver, {"cmd": "open", "label": label, "url": url, "timeout": args.timeout, "after": args.after,
                  "marks": page in ("shoal",) and not args.no_marks})
    _, ev = driver.wait_event(["result"], args.timeout + args.after + 90)
    ev.pop("event", None)
    ev["page"] = page
    ev["playing_s"] = ev["playing_ms"] / 1000 if ev.get("ok") else None
    ev["advanced_s"] = ev["advanced_ms"] / 1000 if ev.get("ok") and ev.get("advanced_ms") is not None else None
    log("%-12s %s" % (label, ("playing %.3f s, currentTime > 0 at %s s%s" % (
        ev["playing_s"], fmt(ev["advanced_s"], 3), "" if (ev.get("video") or {}).get("muted") else " (with sound)"))
        if ev.get("ok") else "FAILED: %s" % ev.get("error")))
    return ev


def stop_serve(serve):
    """SIGTERM (shoal serve stops on a signal), then its `stopped` event: what the origin sent."""
    stats = None
    if serve.proc.poll() is None:
        try:
            os.kill(serve.pid, signal.SIGTERM)  # the `timeout` wrapper; it forwards the signal
        except ProcessLookupError:
            pass
        try:
            _, stopped = serve.wait_event(["stopped"], 10)
            stats = (stopped.get("torrents") or [{}])[0]
        except RuntimeError:
            pass
    serve.stop(grace_s=10)
    return stats


def git_commit():
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return head + ("+dirty" if dirty else "") if head else None
    except (OSError, subprocess.TimeoutExpired):
        return None


ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s")


def count_origin_rtos(path, rows, timeout_s):
    """Per load, the SCTP retransmission timeouts (T3-rtx: a stall of RTO, 1 s at first) the origin
    logged between the page's navigation start and its `playing` (or the timeout)."""
    stamps = []
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                line = ANSI.sub("", line)
                m = STAMP.match(line)
                if m and "T3-rtx timed out" in line:
                    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
                    stamps.append(t.timestamp() * 1000)
    except OSError:
        return
    for r in rows:
        start = r.get("time_origin")
        if not start:
            continue
        end = start + (r["playing_ms"] if r.get("ok") else timeout_s * 1000)
        r["origin_sctp_rto"] = [round(t - start) for t in stamps if start <= t <= end]


# ---- report ----------------------------------------------------------------------------------

def fmt(x, digits=3):
    return "-" if x is None else "%.*f" % (digits, x)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def mark_value(row, where, key):
    if where == "nav":
        return (row.get("nav") or {}).get(key)
    if where == "res":
        ends = [r["end"] for r in row.get("resources") or [] if r["path"].endswith("/" + key)]
        return ends[0] if ends else None
    return (row.get(where) or {}).get(key)


def column(row, page, col):
    for c, w, k in MARKS[page]:
        if c == col:
            return mark_value(row, w, k)
    return None


def phases(row, page):
    out, before = {}, 0
    for col in PHASES[page]:
        at = column(row, page, col)
        out[col] = at - before if at is not None and before is not None else None
        before = at
    return out


def summarize(rows, pages):
    summary = {}
    for p in pages:
        mine = [r for r in rows if r["page"] == p]
        for r in mine:
            r["phases_ms"] = phases(r, p) if r.get("ok") else None
        summary[p] = {
            "runs": len(mine), "played": sum(1 for r in mine if r.get("ok")),
            "playing_s": [r["playing_s"] for r in mine], "advanced_s": [r["advanced_s"] for r in mine],
            "playing_median_s": med([r["playing_s"] for r in mine]),
            "advanced_median_s": med([r["advanced_s"] for r in mine]),
            "marks_median_ms": {col: med([mark_value(r, w, k) for r in mine if r.get("ok")])
                                for col, w, k in MARKS[p]},
            "phases_median_ms": {col: med([r["phases_ms"][col] for r in mine if r.get("ok")]) for col in PHASES[p]},
        }
    return summary


def verdict(summary):
    s, w = summary.get("shoal"), summary.get("wt3")
    if not s or not w:
        return None, "goal not judged: needs the shoal and wt3 pages"
    sm, wm = s["playing_median_s"], w["playing_median_s"]
    if s["played"] < s["runs"] or sm is None:
        return False, "goal NOT met: the shoal page failed to play in %d of %d runs" % (s["runs"] - s["played"], s["runs"])
    if wm is None:
        return None, "goal not judged: the wt3 page never played"
    r = sm / wm
    ok = sm <= GOAL_S and r <= GOAL_RATIO
    note = "" if w["played"] == w["runs"] else " (wt3 median over the %d of %d runs that played)" % (w["played"], w["runs"])
    return ok, "goal (shoal median <= %.1f s and <= %.1f x wt3): %s: shoal %.3f s (%s %.1f s), shoal/wt3 %.2f (%s %.1f)%s" % (
        GOAL_S, GOAL_RATIO, "MET" if ok else "NOT met", sm, "<=" if sm <= GOAL_S else ">", GOAL_S,
        r, "<=" if r <= GOAL_RATIO else ">", GOAL_RATIO, note)


def print_report(result):
    rows, pages, summary = result["rows"], result["args"]["pages"], result["summary"]
    runs = result["args"]["runs"]
    print("\nseconds from navigation start to the first `playing` (and to currentTime > 0); %s"
          % ("a fresh Chromium and profile per load" if result["args"]["browser"] == "fresh"
             else "one Chromium, a fresh browser context per load"))
    head = "%-6s " % "page" + " ".join("%13s" % ("run %d" % (i + 1)) for i in range(runs)) + "  %15s  %s" % ("median", "played")
    print(head)
    for p in pages:
        mine = [r for r in rows if r["page"] == p]
        cells = []
        for r in mine:
            cells.append("%13s" % ("%.3f (%s)" % (r["playing_s"], fmt(r["advanced_s"], 2)) if r.get("ok") else "FAIL"))
        s = summary[p]
        print("%-6s " % p + " ".join(cells) + "  %15s  %d/%d" % (
            "%s (%s)" % (fmt(s["playing_median_s"]), fmt(s["advanced_median_s"], 2)), s["played"], s["runs"]))
    sm = summary.get("shoal", {}).get("playing_median_s")
    for other in ("wt3", "plain"):
        if "shoal" in summary and other in summary:
            print("shoal / %-5s %s (playing), %s (currentTime > 0)" % (
                other, fmt(ratio(sm, summary[other]["playing_median_s"]), 2),
                fmt(ratio(summary["shoal"]["advanced_median_s"], summary[other]["advanced_median_s"]), 2)))
    print(result["verdict"]["text"])
    for r in rows:
        if not r.get("ok"):
            print("  %s failed: %s%s" % (r["label"], r.get("error"), "; notices: %s" % r["notices"] if r.get("notices") else ""))

    print("\nmilestones, ms from navigation start (median over the runs that played; per run in the JSON)")
    for p in pages:
        cols = MARKS[p]
        print("  %-6s " % p + " ".join("%7s" % c for c, _, _ in cols))
        for r in [r for r in rows if r["page"] == p]:
            print("  %-6s " % r["label"].split("-")[-1] + " ".join(
                "%7s" % fmt(mark_value(r, w, k), 0) for _, w, k in cols))
        print("  %-6s " % "median" + " ".join(
            "%7s" % fmt(summary[p]["marks_median_ms"][c], 0) for c, _, _ in cols))
    legend = {
        "shoal": "html/dcl: page's HTML received / DOMContentLoaded; wasm: engine file received; engine: app.client set "
                 "(wasm compiled, client made); added: magnet added; sw: Service Worker controls the page; peer: "
                 "first peer connected; meta: metadata; byte/b.peer/b.ws: first payload byte, from a peer / the web "
                 "seed; p0/1mib: piece 0 / the file's first MiB verified (these five: 20 ms polling of status() and "
                 "pieces()); sw.req: first stream request through the Service Worker; lstart/lmeta/canplay/play: "
                 "the <video>'s loadstart, loadedmetadata, canplay, playing",
        "wt3": "wt.js: WebTorrent bundle received; client: new WebTorrent() done; sw: its Service Worker controls the "
               "page; peer: first WebRTC wire; meta: metadata; ready: torrent ready (its store checked); wseed: web seed "
               "wire; b.peer/b.ws: first block from WebRTC / the web seed; sw.req: first stream request",
    }
    for p in pages:
        if p in legend:
            print("  %s: %s" % (p, legend[p]))
    print("\nwhere the time goes, median ms of each step (from the milestone before; the first from navigation)")
    for p in pages:
        steps, before = [], "nav"
        for col in PHASES[p]:
            steps.append("%s>%s %s" % (before, col, fmt(summary[p]["phases_median_ms"][col], 0)))
            before = col
        print("  %-6s %s" % (p, "  ".join(steps)))
    heads, pieces = [], None
    for r in rows:
        info, line = r.get("piece_info"), r.get("piece_timeline") or []
        if r["page"] != "shoal" or not info or not line:
            continue
        pieces = info
        at = {}
        for col in ("sw.req", "lmeta", "play"):
            t = column(r, "shoal", col)
            before = [e for e in line if t is not None and e[0] <= t]
            at[col] = "%d/%d (%d in all)" % (before[-1][2], info["headPieces"], before[-1][1]) if before else "-"
        heads.append("%s: %s" % (r["label"], ", ".join("at %s %s" % kv for kv in at.items())))
    if heads:
        print("  shoal, pieces of the file's first MiB verified (of %d pieces of %d KiB in all): %s" % (
            pieces["pieces"], pieces["pieceLength"] // 1024, "; ".join(heads)))
    rtos = [r for r in rows if r.get("origin_sctp_rto") is not None and r["page"] != "plain"]
    if rtos:
        print("  origin's SCTP retransmission timeouts (each stalls that peer ~1 s) before playing, ms from navigation: %s"
              % "; ".join("%s %s" % (r["label"], ",".join(map(str, r["origin_sctp_rto"])) or "none") for r in rtos))
    sound = [r["label"] for r in rows if r.get("ok") and not (r.get("video") or {}).get("muted")]
    if sound:
        print("  played with sound (Chromium allowed it; the others muted): %s" % ", ".join(sound))
    st = result.get("origin_stats") or {}
    if st:
        print("\norigin (shoal serve's last word): uploaded %.2f MiB to peers, %s requests refused for spreading, "
              "peers at the end %s" % ((st.get("uploaded") or 0) / 1048576, st.get("spread_refused", "-"), st.get("peers", "-")))
        if st.get("spread_refused"):
            print("  WARNING: the origin refused requests: a page met a peer of an earlier page still connected, "
                  "and waited for it (raise --gap)")
    v = result["versions"]
    print("versions: shoal %s (binary %s, built %s; repository %s), Chromium %s, WebTorrent %s, playwright-core %s" % (
        v["shoal"], result["shoal_bin"], v["shoal_built"], v["git"], v["chromium"], v["webtorrent"], v["playwright-core"]))
    print("load average before %s, after %s; results in %s, logs in %s" % (
        " ".join("%.2f" % x for x in result["machine"]["load_before"]),
        " ".join("%.2f" % x for x in result["machine"]["load_after"]), result["json"], result["logs"]))


# ---- main ------------------------------------------------------------------------------------

def main():
    args = parse_args()
    if os.environ.get(IN_NETNS) != "1":
        prepare(args)
        reexec_in_netns(args)
    shoal = shoal_bin(args)
    args.video = os.path.abspath(args.video)
    os.makedirs(args.cache_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = os.path.join(args.cache_dir, "logs-" + stamp)
    os.makedirs(log_dir)
    work = tempfile.mkdtemp(prefix="shoal-first-click-")
    load_before = os.getloadavg()
    t_start = time.monotonic()
    rows, warmup, procs = [], [], []
    origin_stats, serving, static, chromium_ua = None, None, None, None
    error = None
    try:
        env = ["env", "RUST_LOG=" + args.origin_log] if args.origin_log else []
        serve = Proc("serve", env + [shoal, "serve", args.video, "--http", "127.0.0.1:0", "--json"] + args.shoal_arg,
                     log_dir, args.hard_limit, cwd=work)
        procs.append(serve)
        _, serving = serve.wait_event(["serving"], 60)
        if "shoal" in args.pages and not serving.get("engine_built"):
            raise RuntimeError("%s has no browser engine (engine_built false): scripts/build-web.sh, then rebuild shoal" % shoal)
        f = serving["files"][0]
        video_url = web_seed_file_url(serving)
        files = {
            "/wt3.html": ((WT3_PAGE % {"magnet": json.dumps(f["magnet"])}).encode(), "text/html; charset=utf-8"),
            "/plain.html": ((PLAIN_PAGE % {"src": video_url.replace('"', "%22")}).encode(), "text/html; charset=utf-8"),
        }
        for name in ("webtorrent.min.js", "sw.min.js"):
            with open(os.path.join(WT_DIST, name), "rb") as fh:
                files["/" + name] = (fh.read(), "text/javascript; charset=utf-8")
        static = StaticServer(files)
        urls = {"shoal": f["app_url"], "wt3": static.base + "/wt3.html", "plain": static.base + "/plain.html"}
        log("shoal serve at %s; web seed file %s; pages %s" % (serving["url"], video_url, static.base))
        driver = Proc("browser", ["node", DRIVER, "--browser", args.browser, "--chromium", args.chromium,
                                  "--max-seconds", str(int(args.hard_limit))] +
                      ["--chromium-arg=" + a for a in args.chromium_arg], log_dir, args.hard_limit, cwd=HERE)
        procs.append(driver)
        driver.wait_event(["launched"], 60)
        if not args.no_warmup:
            for p in args.pages:
                warmup.append(load(driver, args, p, urls[p], "warmup-%s" % p))
                time.sleep(args.gap)
        for rep in range(args.runs):
            for p in args.pages:
                rows.append(load(driver, args, p, urls[p], "%s-%d" % (p, rep + 1)))
                time.sleep(args.gap)
        chromium_ua = next((r.get("user_agent") for r in rows + warmup if r.get("user_agent")), None)
    except RuntimeError as e:
        error = str(e)
        log("FAILED:", e)
    finally:
        if static:
            static.close()
        for p in reversed(procs):
            if p.name == "serve":
                origin_stats = stop_serve(p)
            else:
                p.stop(grace_s=10)
        shutil.rmtree(work, ignore_errors=True)
    if args.origin_log:
        count_origin_rtos(os.path.join(log_dir, "serve.log"), rows + warmup, args.timeout)
    summary = summarize(rows, args.pages)
    ok, text = verdict(summary) if rows else (None, "no runs")
    out = args.json or os.path.join(args.cache_dir, "results-%s.json" % stamp)
    built = None
    if os.path.exists(shoal):
        built = datetime.datetime.fromtimestamp(os.path.getmtime(shoal)).isoformat(timespec="seconds")
    result = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable] + sys.argv,
        "args": vars(args),
        "error": error,
        "video": {"path": args.video, "bytes": os.path.getsize(args.video)},
        "serving": serving,
        "shoal_bin": shoal,
        "versions": {"shoal": version_of([shoal, "--version"]), "shoal_built": built, "git": git_commit(),
                     "chromium": version_of([args.chromium, "--version"]), "chromium_user_agent": chromium_ua,
                     "webtorrent": npm_version("webtorrent"), "playwright-core": npm_version("playwright-core")},
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()},
        "duration_s": time.monotonic() - t_start,
        "summary": summary,
        "verdict": {"goal_met": ok, "text": text, "goal_s": GOAL_S, "goal_ratio": GOAL_RATIO},
        "origin_stats": origin_stats,
        "rows": rows, "warmup": warmup,
        "json": out, "logs": log_dir,
    }
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    if error:
        print("FAILED: %s" % error)
    print_report(result)
    sys.exit(0 if not error and rows and all(r.get("ok") for r in rows) else 1)


if __name__ == "__main__":
    main()
