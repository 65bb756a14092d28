#!/usr/bin/python3
"""Server benchmark (issue 21): a library of torrents held by `shoal serve`, beside
qBittorrent-nox (Debian's 4.5) holding the same, as a person who leaves a server running lives
it.

  /usr/bin/python3 benches/server.py [--torrents 100] [--size-mib 100] [--clients 50]
                                     [--seconds 10] [--skip-qbittorrent] [--shoal-bin PATH]
                                     [--rqbit-bin PATH] [--rqbit-fastresume] [--json FILE]

Beside rqbit's server too when rqbit is on PATH (or --rqbit-bin; `cargo install rqbit`):
`rqbit server start` with its defaults (fast resume off unless --rqbit-fastresume).

For each server, in a folder of its own:
  1. N single-file torrents of SIZE MiB each (sparse files, `shoal create`, made once per run)
     are added through the server's API (Shoal: POST /api/torrents with the .torrent and
     `dir`; qBittorrent: POST /api/v2/torrents/add with `savepath`), their data already in
     place: each server checks it once, until all N are complete.
  2. The server stops (SIGTERM) and starts again on the same state. Reported: seconds from the
     start to its API answering (`api_s`) and to all N torrents listed complete (`ready_s`),
     and whether the data was hashed again (Shoal: `resumed` per torrent; qBittorrent: any
     torrent seen in a checking state).
  3. Idle for 5 s: the resident memory (VmRSS) of the server process.
  4. CLIENTS threads each GET the full list (Shoal: /api/torrents; qBittorrent:
     /api/v2/torrents/info) one request after another, one connection each, for SECONDS:
     requests per second and latency p50/p99.
No test depends on it. DHT, LSD and port mapping are off in both (nothing here may reach
outside); Shoal's other defaults are as a user gets them.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from clients import find_shoal  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(what, limit_s, check):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def make_library(root, count, size_mib, shoal):
    data = os.path.join(root, "data")
    torrents = os.path.join(root, "torrents")
    os.makedirs(data)
    os.makedirs(torrents)
    for i in range(count):
        path = os.path.join(data, f"film-{i:03}.bin")
        with open(path, "wb") as f:
            f.truncate(size_mib << 20)
        # A library's files are old: files written in the seconds before a resume record is
        # saved are hashed again at the next start (their time cannot show a later write).
        hour_ago = time.time() - 3600
        os.utime(path, (hour_ago, hour_ago))
        subprocess.run([shoal, "create", path, "-o", os.path.join(torrents, f"{i:03}.torrent"),
                        "--piece-size", "1MiB"], check=True, stdout=subprocess.DEVNULL)
    return data, [os.path.join(torrents, t) for t in sorted(os.listdir(torrents))]


def load_test(port, path, clients, seconds, headers=None):
    """`clients` threads, each its own keep-alive connection, GET `path` back to back."""
    latencies, errors, stop = [], [0], time.monotonic() + seconds
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise http.client.HTTPException(response.status)
                mine.append(time.monotonic() - t0)
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    q = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)
    return {"requests_per_s": round(len(latencies) / seconds, 1), "p50_ms": q(0.50),
            "p99_ms": q(0.99), "errors": errors[0]}


class Shoal:
    name = "shoal"

    def __init__(self, binary, root, port):
        self.binary, self.root, self.port, self.proc = binary, root, port, None
        self.state = os.path.join(root, "state")

    def start(self):
        env = dict(os.environ, SHOAL_NO_DHT="1", SHOAL_NO_LSD="1", SHOAL_NO_PORT_MAPPING="1",
                   XDG_STATE_HOME=os.path.join(self.root, "xdg-state"))
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--http", f"127.0.0.1:{self.port}", "--json", "--no-webrtc",
             "--state", self.state, "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.root, "serve.log"), "a"))

    def api_up(self):
        return request(self.port, "GET", "/api/session")[0] == 200

    def add(self, torrent, data):
        with open(torrent, "rb") as f:
            body = f.read()
        status, answer = request(self.port, "POST", f"/api/torrents?dir={data}", body,
                                 {"Content-Type": "application/x-bittorrent"})
        if status != 201:
            raise RuntimeError(f"add {torrent}: {status} {answer[:200]}")

    def complete(self, count):
        torrents = json.loads(request(self.port, "GET", "/api/torrents")[1])["torrents"]
        ours = [t for t in torrents if not t["shared"]]
        if len(ours) == count and all(t["state"] == "seeding" for t in ours):
            return ours

    def hashed_again(self, listed):
        return sum(1 for t in listed if t["resumed"] is not True)

    list_path = "/api/torrents"
    headers = None


class QBittorrent:
    name = "qbittorrent"

    def __init__(self, root, port):
        self.root, self.port, self.proc = root, port, None
        self.profile = os.path.join(root, "profile")
        self.checking_seen = set()
        config = os.path.join(self.profile, "qBittorrent", "config")
        os.makedirs(config)
        with open(os.path.join(config, "qBittorrent.conf"), "w") as f:
            f.write("[LegalNotice]\nAccepted=true\n\n"
                    "[BitTorrent]\nSession\\DHTEnabled=false\nSession\\LSDEnabled=false\n"
                    "Session\\PeXEnabled=false\nSession\\Port=0\n\n"
                    "[Network]\nPortForwardingEnabled=false\n\n"
                    "[Preferences]\nWebUI\\LocalHostAuth=false\nWebUI\\Port=%d\n"
                    "WebUI\\Address=127.0.0.1\nWebUI\\CSRFProtection=false\n"
                    "WebUI\\HostHeaderValidation=false\nConnection\\UPnP=false\n"
                    "Bittorrent\\DHT=false\nBittorrent\\LSD=false\nBittorrent\\PeX=false\n" % self.port)

    def start(self):
        self.proc = subprocess.Popen(
            ["qbittorrent-nox", f"--profile={self.profile}", f"--webui-port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.root, "qbt.log"), "a"))

    def api_up(self):
        return request(self.port, "GET", "/api/v2/app/version")[0] == 200

    def add(self, torrent, data):
        boundary = uuid.uuid4().hex
        with open(torrent, "rb") as f:
            content = f.read()
        parts = [
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n{data}\r\n".encode(),
            (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; "
             f"filename=\"{os.path.basename(torrent)}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").encode()
            + content + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        status, answer = request(self.port, "POST", "/api/v2/torrents/add", b"".join(parts),
                                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise RuntimeError(f"add {torrent}: {status} {answer[:200]}")

    def complete(self, count):
        torrents = json.loads(request(self.port, "GET", "/api/v2/torrents/info")[1])
        # checkingUP/DL hash the data; checkingResumeData only reads the fast-resume file.
        self.checking_seen |= {t["hash"] for t in torrents if t["state"] in ("checkingUP", "checkingDL")}
        if len(torrents) == count and all(t["progress"] == 1 for t in torrents):
            return torrents

    def hashed_again(self, _listed):
        return len(self.checking_seen)

    list_path = "/api/v2/torrents/info"
    headers = None


class Rqbit:
    """rqbit's server (`rqbit server start`), with its defaults: its state in
    --persistence-location, no fast resume unless asked (`--rqbit-fastresume`)."""
    name = "rqbit"

    def __init__(self, binary, root, port, fastresume):
        self.binary, self.root, self.port, self.proc = binary, root, port, None
        self.fastresume = fastresume
        self.checking_seen = set()

    def start(self):
        argv = [self.binary, "--http-api-listen-addr", f"127.0.0.1:{self.port}", "--disable-dht",
                "--disable-lsd", "--disable-upnp-port-forward", "--listen-port", str(free_port()),
                "server", "start", "--persistence-location", os.path.join(self.root, "state")]
        if self.fastresume:
            argv.append("--fastresume")
        argv.append(os.path.join(self.root, "downloads"))
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.root, "rqbit.log"), "a"))

    def api_up(self):
        return request(self.port, "GET", "/torrents")[0] == 200

    def add(self, torrent, data):
        with open(torrent, "rb") as f:
            body = f.read()
        status, answer = request(self.port, "POST", f"/torrents?overwrite=true&output_folder={data}",
                                 body, {"Content-Type": "application/x-bittorrent"}, timeout=600)
        if status != 200:
            raise RuntimeError(f"add {torrent}: {status} {answer[:200]}")

    def complete(self, count):
        torrents = json.loads(request(self.port, "GET", "/torrents?with_stats=true")[1])["torrents"]
        self.checking_seen |= {t["info_hash"] for t in torrents
                               if (t.get("stats") or {}).get("state") == "initializing"}
        if len(torrents) == count and all((t.get("stats") or {}).get("finished") for t in torrents):
            return torrents

    def hashed_again(self, _listed):
        return len(self.checking_seen)

    list_path = "/torrents?with_stats=true"
    headers = None


def stop(proc, limit_s=60):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(server, data, torrents, args):
    count = len(torrents)
    server.start()
    wait_until("the API", 60, server.api_up)
    t0 = time.monotonic()
    for torrent in torrents:
        server.add(torrent, data)
    wait_until("every torrent complete", 1800, lambda: server.complete(count))
    first_check_s = time.monotonic() - t0
    stop(server.proc)

    server.checking_seen = set()
    started = time.monotonic()
    server.start()
    wait_until("the API after the restart", 120, server.api_up)
    api_s = time.monotonic() - started
    listed = wait_until("every torrent back", 600, lambda: server.complete(count))
    ready_s = time.monotonic() - started
    time.sleep(5)
    result = {
        "first_check_s": round(first_check_s, 2),
        "restart_api_s": round(api_s, 3),
        "restart_ready_s": round(ready_s, 3),
        "hashed_again": server.hashed_again(listed),
        "idle_rss_mib": round(rss_kib(server.proc.pid) / 1024, 1),
        "api_load": load_test(server.port, server.list_path, args.clients, args.seconds, server.headers),
    }
    stop(server.proc)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torrents", type=int, default=100)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--skip-qbittorrent", action="store_true")
    parser.add_argument("--rqbit-bin", help="rqbit to compare with [default: rqbit on PATH, if any]")
    parser.add_argument("--rqbit-fastresume", action="store_true",
                        help="give rqbit --fastresume (off by default in rqbit 9)")
    parser.add_argument("--shoal-bin")
    parser.add_argument("--json")
    args = parser.parse_args()
    shoal = find_shoal(REPO, args.shoal_bin)
    root = tempfile.mkdtemp(prefix="shoal-server-bench-")
    try:
        data, torrents = make_library(os.path.join(root, "library"), args.torrents, args.size_mib, shoal)
        report = {"torrents": args.torrents, "size_mib": args.size_mib, "clients": args.clients}
        servers = [Shoal(shoal, os.path.join(root, "shoal"), free_port())]
        if not args.skip_qbittorrent and shutil.which("qbittorrent-nox"):
            servers.append(QBittorrent(os.path.join(root, "qbt"), free_port()))
        rqbit = args.rqbit_bin or shutil.which("rqbit")
        if rqbit:
            servers.append(Rqbit(rqbit, os.path.join(root, "rqbit"), free_port(), args.rqbit_fastresume))
        for server in servers:
            os.makedirs(server.root, exist_ok=True)
            report[server.name] = measure(server, data, torrents, args)
            print(json.dumps({server.name: report[server.name]}), flush=True)
        for other in ("qbittorrent", "rqbit"):
            if other not in report:
                continue
            s, q = report["shoal"], report[other]
            report[f"ratios_{other}"] = {
                "restart_ready": round(s["restart_ready_s"] / q["restart_ready_s"], 2),
                "idle_rss": round(s["idle_rss_mib"] / q["idle_rss_mib"], 2),
                "requests_per_s": round(s["api_load"]["requests_per_s"] / max(q["api_load"]["requests_per_s"], 0.1), 2),
                "p99": round(s["api_load"]["p99_ms"] / max(q["api_load"]["p99_ms"], 0.01), 2),
            }
        print(json.dumps(report, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
