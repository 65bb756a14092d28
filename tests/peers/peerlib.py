"""Plumbing shared by the reference-peer drivers in this folder (not a driver itself).

Every driver follows one contract so that the Rust test kit (crates/shoal-testkit) can run any
of them the same way:

* stdout carries one JSON object per line, each with an "event" key: "ready" (listening, with
  "port"), "progress", "done", "error", "exit", ... Anything else a driver has to say goes to
  stderr.
* stdin is a lifeline: when it reaches end-of-file (the test process died or dropped its handle)
  the driver shuts down. Lines written to it are commands (JSON objects, e.g.
  {"cmd": "connect", "peer": "127.0.0.9:6881"}) for drivers that understand them.
  Pass --no-stdin to run a driver by hand with stdin not attached.
* SIGTERM/SIGINT stop a driver cleanly; --max-seconds bounds its whole life.
* Third-party programs a driver starts get PR_SET_PDEATHSIG, so they die with the driver even
  when the driver itself is SIGKILLed.
"""

import ctypes
import faulthandler
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

# A crash inside libtorrent's or Transmission's code prints the Python stack on stderr, so a
# reference peer's SIGSEGV in a test log says which call it died in.
faulthandler.enable()

_emit_lock = threading.Lock()


def emit(event, **fields):
    """Prints one JSON event line on stdout (flushed: the reader is waiting on it)."""
    obj = {"event": event}
    obj.update(fields)
    with _emit_lock:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def fail(message, code=2):
    """Reports an error event and exits: the test sees the reason, not just an exit status."""
    emit("error", message=str(message))
    sys.exit(code)


def parse_hostport(text):
    """'127.0.0.2:6881' -> ('127.0.0.2', 6881). IPv6 as '[::1]:6881'."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("expected HOST:PORT, got %r" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def add_common_args(ap):
    ap.add_argument("--max-seconds", type=float, default=1800,
                    help="hard upper bound on the driver's lifetime (default 1800)")
    ap.add_argument("--no-stdin", action="store_true",
                    help="do not treat stdin EOF as a stop request (for running by hand with </dev/null)")


class Lifeline:
    """Stop conditions shared by all drivers: signals, stdin EOF, a deadline.

    Commands read from stdin are queued; `commands()` drains them without blocking."""

    def __init__(self, max_seconds, watch_stdin=True):
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds
        self.reason = None
        self._commands = queue.Queue()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if watch_stdin:
            t = threading.Thread(target=self._read_stdin, daemon=True)
            t.start()

    def _on_signal(self, signum, _frame):
        self.reason = "signal %d" % signum

    def _read_stdin(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
                if not isinstance(cmd, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                log("ignoring malformed command %r: %s" % (line, e))
                continue
            self._commands.put(cmd)
        if self.reason is None:
            self.reason = "stdin closed"

    def elapsed(self):
        return time.monotonic() - self.started

    def should_stop(self):
        if self.reason is None and time.monotonic() > self.deadline:
            self.reason = "max-seconds reached"
        return self.reason is not None

    def commands(self):
        out = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out


# Looked up once, here: the child between fork and exec (other threads frozen, possibly
# holding locks) should only make the call, not load anything.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None
_PR_SET_PDEATHSIG = 1


def die_with_parent():
    # Runs in the child between fork and exec: ask the kernel to SIGTERM it when we die.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def spawn(cmd, **kwargs):
    """Starts a third-party program that must not outlive this driver."""
    log("+ " + " ".join(cmd))
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, **kwargs)


def stop_process(proc, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` seconds. Only for processes this driver started."""
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def free_port(ip):
    """A TCP port nobody listens on right now (for programs that cannot bind port 0 and report)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((ip, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _hex_ipv4(ip):
    """'127.0.0.2' as /proc/net/tcp writes it: the 32-bit address in host (little-endian) order."""
    return "%08X" % int.from_bytes(socket.inet_aton(ip), "little")


def tcp_listening(port, ip=None):
    """True when a socket is in LISTEN state on this TCP port, on `ip` or on the wildcard
    address (any address when `ip` is None)."""
    wanted = None if ip is None else {_hex_ipv4(ip), _hex_ipv4("0.0.0.0")}
    with open("/proc/net/tcp") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) <= 3 or fields[3] != "0A":
                continue
            addr, _, hexport = fields[1].partition(":")
            if int(hexport, 16) == port and (wanted is None or addr in wanted):
                return True
    return False


def dir_bytes(path):
    """Bytes allocated on disk under `path` (sparse files count only written blocks):
    a cheap, approximate progress figure for clients that do not report theirs."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total
