//! Private network namespaces, for tests that need an interface other than loopback.
//!
//! WebRTC in Chromium (and libwebrtc generally) gathers no ICE candidates when `lo` is the only
//! interface, so browser peers cannot connect on a plain loopback setup. A fresh namespace
//! (`unshare -n`) with `lo` up plus a veth pair `v0`/`v1` holding [`VETH_ADDR`]/24 and a default
//! route gives them a host candidate. The pair exists only inside the namespace, which has no
//! uplink: nothing in it can reach the host's or any outside network, and its loopback is its
//! own (no clash with ports used by tests running at the same time).
//!
//! A test runs in one with [`run_test_in_netns`]: outside a namespace it re-executes its own
//! test binary, filtered to exactly that test, under `unshare`, and reports how that went;
//! inside (the environment variable [`INSIDE_ENV`] is set) it returns [`Netns::Inside`] and the
//! test body runs, with its tracker in-process and its peers as child processes, all sharing
//! the namespace. Re-executing the whole test, rather than wrapping only the peers, is what
//! lets an in-process server (the tracker) live in the same namespace as the browsers.
//! [`command`] wraps any other program the same way.
//!
//! As root the namespace is made directly; otherwise through a user namespace (`unshare -r`)
//! where the kernel allows it. Only when neither works, or `unshare`/`ip` are not installed,
//! is the test skipped ([`Netns::Skipped`], which callers print as `SKIP: ...`).

use std::ffi::OsStr;
use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::paths::require_tool;

/// Set (to `1`) in the environment of everything started inside a namespace by this module.
pub const INSIDE_ENV: &str = "SHOAL_TEST_NETNS";

/// The namespace's non-loopback address (RFC 2544 benchmarking range, on `v0`).
pub const VETH_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// Run by `sh` inside the new namespace before the wrapped program is exec'd. IPv6 is off on
/// the veth pair (the namespace's own setting for new interfaces; `lo` keeps `::1`): its
/// link-local addresses would otherwise turn permanent 1-2 s later, and Chromium, seeing the
/// addresses change, aborts the loads in flight with `ERR_NETWORK_CHANGED`.
const SETUP: &str = "ip link set lo up \
    && { sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true; } \
    && ip link add v0 type veth peer name v1 \
    && ip addr add 198.18.0.1/24 dev v0 \
    && ip link set v0 up && ip link set v1 up \
    && ip route add default via 198.18.0.254 dev v0 \
    && exec \"$@\"";

/// Output kept per stream of a re-executed test (the end of it, if longer).
const OUTPUT_LIMIT: usize = 1 << 20;

/// What [`run_test_in_netns`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// This process is inside a namespace: run the test body.
    Inside,
    /// The test ran in a namespace, in a child process, and passed.
    Passed,
    /// Namespaces cannot be made on this machine (why); the test did not run.
    Skipped(String),
}

/// True inside a namespace made by this module.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some_and(|v| v == "1")
}

/// Whether this process runs as root (namespaces, raw sockets).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `unshare` flags that work here, or why none do.
fn unshare_flags() -> std::result::Result<&'static [&'static str], String> {
    for tool in ["unshare", "ip", "sh"] {
        if let Err(e) = require_tool(tool) {
            return Err(e.to_string());
        }
    }
    if is_root() {
        // Root can always unshare; a failure later is a real error, not a reason to skip.
        return Ok(&["-n"]);
    }
    let probe = Command::new("unshare")
        .args(["-r", "-n", "sh", "-c", SETUP, "sh", "true"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => Ok(&["-r", "-n"]),
        Ok(out) => Err(format!(
            "not root, and a user network namespace was refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

/// Why a network namespace cannot be made here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    unshare_flags().err()
}

/// A command running `program` inside a fresh namespace (set up as described above), with
/// [`INSIDE_ENV`] set. Arguments added to it go to `program`.
pub fn command(program: impl AsRef<OsStr>) -> Result<Command> {
    let flags = unshare_flags().map_err(Error::Setup)?;
    let mut cmd = Command::new("unshare");
    cmd.args(flags).args(["sh", "-c", SETUP, "sh"]).arg(program).env(INSIDE_ENV, "1");
    Ok(cmd)
}

/// Runs the calling test inside a network namespace (see the module documentation).
///
/// `test` is the test's full name as the harness prints it (`module::name`, or just `name` at
/// the top of an integration-test file). Outside a namespace this waits up to `timeout` for the
/// re-executed test, prints its output (so the harness shows it for a failure, or with
/// `--nocapture`), and fails unless exactly that one test ran and passed.
pub fn run_test_in_netns(test: &str, timeout: Duration) -> Result<Netns> {
    if inside() {
        return Ok(Netns::Inside);
    }
    if let Some(why) = unavailable() {
        return Ok(Netns::Skipped(why));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the test binary", e))?;
    let mut cmd = command(&exe)?;
    // One test, exactly, on one thread; --nocapture so its output reaches us.
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {cmd:?}"), e))?;
    let out = capture(child.stdout.take());
    let err = capture(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // `unshare` and `sh` exec, so this PID is the test binary itself; its peers
                // see their stdin close and stop.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(Error::io("waiting for the test in its namespace", e)),
        }
    };
    let stdout = out.finish();
    let stderr = err.finish();
    print!("{stdout}");
    eprint!("{stderr}");
    let name = format!("{test} (in a network namespace)");
    let Some(status) = status else {
        return Err(Error::Timeout {
            name,
            what: "the end of the test".into(),
            timeout,
            tail: last_lines(&stderr, 40),
        });
    };
    if !status.success() {
        return Err(Error::exited(&name, "success", Some(status), last_lines(&stderr, 40)));
    }
    // A name that matched nothing would also exit 0: require the one test to have run.
    if !stdout.contains("test result: ok. 1 passed") {
        return Err(Error::Setup(format!(
            "{name}: the re-executed binary did not run exactly this test (is {test:?} its \
             full name?)"
        )));
    }
    Ok(Netns::Passed)
}

/// A reader thread keeping the last [`OUTPUT_LIMIT`] bytes of a stream.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<thread::JoinHandle<()>>,
}

fn capture<R: Read + Send + 'static>(stream: Option<R>) -> Capture {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let thread = stream.map(|mut stream| {
        let buf = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = stream.read(&mut chunk) {
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > OUTPUT_LIMIT {
                        let cut = b.len() - OUTPUT_LIMIT;
                        b.drain(..cut);
                    }
                }
            }
        })
    });
    Capture { buf, thread }
}

impl Capture {
    fn finish(mut self) -> String {
        // Bounded: a grandchild that inherited the pipe could keep it open.
        let deadline = Instant::now() + Duration::from_secs(2);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        let bytes = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_in_a_namespace_sees_only_its_own_interfaces() {
        if let Some(why) = unavailable() {
            println!("SKIP: {why}");
            return;
        }
        let out = command("ip").unwrap().args(["-4", "-o", "addr", "show"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("lo ") && text.contains("127.0.0.1/8"), "{text}");
        assert!(text.contains("v0 ") && text.contains("198.18.0.1/24"), "{text}");
        assert_eq!(text.lines().count(), 2, "only lo and v0 have addresses: {text}");
    }

    #[test]
    fn a_missing_test_name_is_an_error_not_a_pass() {
        if inside() {
            return; // the re-executed binary runs no test of that name: nothing to do here
        }
        if let Some(why) = unavailable() {
            println!("SKIP: {why}");
            return;
        }
        let err = run_test_in_netns("no_such_test_anywhere", Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("did not run exactly this test"), "{err}");
    }

    /// Fails only when re-executed in a namespace: the target of the next test.
    #[test]
    fn panics_only_inside_a_namespace() {
        assert!(!inside(), "failing on purpose inside the namespace");
    }

    #[test]
    fn a_failure_inside_the_namespace_fails_the_outer_test() {
        if inside() {
            return;
        }
        if let Some(why) = unavailable() {
            println!("SKIP: {why}");
            return;
        }
        let test = "netns::tests::panics_only_inside_a_namespace";
        let err = run_test_in_netns(test, Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("failing on purpose"), "{err}");
    }
}
