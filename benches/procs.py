"""Running benchmarked programs as whole processes: wall time, peak RSS, bounded lifetimes.

Every program runs as `/usr/bin/time -v -o REPORT timeout -k 5 LIMIT PROGRAM ...`:
- `timeout` bounds it even if this harness dies;
- `/usr/bin/time` sits outside `timeout`, so that when we stop a program (by signalling the
  `timeout` process, which forwards the signal) /usr/bin/time survives and still writes its report;
- the peak RSS is the program's own (GNU time reports the largest child's maximum RSS, and
  `timeout` itself is a few hundred KiB).
Processes are only ever stopped by the PIDs we spawned, never by name.
"""

import os
import re
import signal
import subprocess
import time

TIME = "/usr/bin/time"


class Run:
    """One spawned program. `wall` is seconds from spawn to exit, measured here."""

    def __init__(self, name, argv, log_path, report_path, limit_s, env=None, cwd=None):
        self.name = name
        self.log_path = log_path
        self.report_path = report_path
        cmd = [TIME, "-v", "-o", report_path, "timeout", "-k", "5", str(int(limit_s))] + argv
        self.argv = argv
        self._log = open(log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd)
        self.wall = None

    def poll(self):
        if self.proc.poll() is not None and self.wall is None:
            self._finish()
        return self.proc.returncode

    def wait(self, limit_s):
        """Wait for a natural exit; stop the program if it outlives `limit_s`. Returns the exit code."""
        try:
            self.proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            self.stop()
        if self.wall is None:
            self._finish()
        return self.proc.returncode

    def _finish(self):
        self.wall = time.monotonic() - self.t0
        self._log.close()

    def stop(self, grace_s=10):
        """SIGTERM the `timeout` wrapper (it forwards to the program), then escalate to SIGKILL."""
        if self.proc.poll() is None:
            for pid in _children(self.proc.pid):
                _signal(pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                for pid in _descendants(self.proc.pid):
                    _signal(pid, signal.SIGKILL)
                _signal(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.wall is None:
            self._finish()

    def _report(self):
        try:
            with open(self.report_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def peak_rss_kib(self):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", self._report())
        return int(m.group(1)) if m else None

    def cpu_seconds(self):
        """User + system CPU time of the program. On a busy 2-core box this moves far less than
        the wall time, and a download there is CPU-bound, so it is the steadier figure."""
        report = self._report()
        user = re.search(r"User time \(seconds\): ([\d.]+)", report)
        system = re.search(r"System time \(seconds\): ([\d.]+)", report)
        return round(float(user.group(1)) + float(system.group(1)), 2) if user and system else None

    def wait_for_line(self, prefix, limit_s):
        """True once a line of the program's output starts with `prefix`; False when it exits
        first or `limit_s` passes."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                with open(self.log_path, errors="replace") as f:
                    if any(line.startswith(prefix) for line in f):
                        return True
            except OSError:
                pass
            if self.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _children(pid):
    out = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out += [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _descendants(pid):
    out = []
    for child in _children(pid):
        out += _descendants(child) + [child]
    return out


def tcp_listening(port):
    """True when some socket is in LISTEN state on `port` (any address), read from /proc/net/tcp*."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (the kernel's pick; small race, fine on a bench box)."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
