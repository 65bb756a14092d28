//! Child processes that cannot outlive the test that started them, and bounded waits on the
//! JSON event lines they print.
//!
//! Every reference-peer driver in `tests/peers` prints one JSON object a line on stdout
//! (`{"event":"ready","port":6881}`, ...), logs to stderr, and treats end-of-file on stdin as a
//! request to stop. [`ChildGuard`] owns the three pipes: JSON lines become events, everything
//! else goes into a bounded tail kept for error messages, and dropping the guard closes stdin,
//! sends SIGTERM and finally SIGKILL, to that one process id only.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

/// How many lines of a child's output are kept for error messages.
const TAIL_LINES: usize = 60;
/// How long a stopping child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// A child process we started, killed by PID when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    seen: Vec<Value>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The stdout and stderr reader threads; they end at end-of-file.
    readers: Vec<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `cmd` with all three standard streams piped. `name` labels its output in errors.
    ///
    /// Set `SHOAL_TEST_VERBOSE=1` to echo the child's output as it arrives (through the test
    /// harness's capture, so it shows for failing tests or with `--nocapture`).
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Result<Self> {
        let name = name.into();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            cmd.spawn().map_err(|e| Error::io(format!("starting {name} ({cmd:?})"), e))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let verbose = std::env::var_os("SHOAL_TEST_VERBOSE").is_some_and(|v| v != "0");
        let (tx, events) = mpsc::channel();
        let mut readers = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            let (tail, label) = (Arc::clone(&tail), name.clone());
            readers.push(thread::spawn(move || read_lines(out, &label, &tail, verbose, Some(tx))));
        }
        if let Some(err) = child.stderr.take() {
            let (tail, label) = (Arc::clone(&tail), name.clone());
            readers.push(thread::spawn(move || read_lines(err, &label, &tail, verbose, None)));
        }
        let stdin = child.stdin.take();
        Ok(ChildGuard { name, child, stdin, events, seen: Vec::new(), tail, readers, status: None })
    }

    /// The label given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every JSON event received so far, oldest first.
    pub fn events(&self) -> &[Value] {
        &self.seen
    }

    /// The last lines the child wrote (stdout and stderr interleaved), for diagnostics.
    pub fn output_tail(&self) -> String {
        match self.tail.lock() {
            Ok(t) => t.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    /// Waits up to `timeout` for an event accepted by `accept`, and returns it.
    ///
    /// Events that do not match are kept (see [`ChildGuard::events`]). An
    /// `{"event":"error"}` that `accept` does not take is returned as [`Error::Reported`];
    /// the child exiting first is [`Error::Exited`].
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if accept(&event) {
                        return Ok(event);
                    }
                    if event_name(&event) == Some("error") {
                        let message = event
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("(no message)")
                            .to_owned();
                        return Err(Error::Reported {
                            name: self.name.clone(),
                            message,
                            tail: self.output_tail(),
                        });
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        name: self.name.clone(),
                        what: what.to_owned(),
                        timeout,
                        tail: self.output_tail(),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; collect its status briefly
                    let status = self.wait_exit(Duration::from_secs(5)).ok();
                    return Err(Error::exited(&self.name, what, status, self.output_tail()));
                }
            }
        }
    }

    /// Waits for the event whose `"event"` field is `event`.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(&format!("{event:?} event"), timeout, |v| event_name(v) == Some(event))
    }

    /// Writes one line to the child's stdin (a command for a driver, e.g.
    /// `{"cmd":"connect","peer":"127.0.0.2:6881"}`).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let name = self.name.clone();
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Setup(format!("{name}: stdin already closed")))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| Error::io(format!("writing to {name}'s stdin"), e))
    }

    /// Closes the child's stdin: drivers take that as "stop now".
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the process to exit (without signalling it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    self.drain_events();
                    return Ok(status);
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        name: self.name.clone(),
                        what: "exit".to_owned(),
                        timeout,
                        tail: self.output_tail(),
                    })
                }
                Ok(None) => thread::sleep(POLL),
                Err(e) => return Err(Error::io(format!("waiting for {}", self.name), e)),
            }
        }
    }

    /// Runs the child to completion (bounded) and requires a zero exit status.
    pub fn wait_success(&mut self, timeout: Duration) -> Result<()> {
        let status = self.wait_exit(timeout)?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::exited(&self.name, "successful exit", Some(status), self.output_tail()))
        }
    }

    /// Stops the child: closes stdin, sends SIGTERM, and SIGKILL after a grace period.
    /// Returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        self.close_stdin();
        if let Ok(status) = self.wait_exit(Duration::from_millis(0)) {
            return Some(status);
        }
        terminate(&self.child);
        if let Ok(status) = self.wait_exit(STOP_GRACE) {
            return Some(status);
        }
        // kill(2) with SIGKILL on our own, not yet reaped, child
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.status = status;
        status
    }

    fn drain_events(&mut self) {
        // The reader threads may still be delivering the last lines (stderr and stdout are
        // read independently of the exit status): wait until both reach end-of-file, bounded,
        // because a grandchild that inherited the pipes can keep them open.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `"event"` field of a driver event.
pub fn event_name(event: &Value) -> Option<&str> {
    event.get("event").and_then(Value::as_str)
}

/// Starts `cmd` and waits up to `timeout` for a JSON line accepted by `accept`; returns the
/// guard (the process keeps running) and that line.
pub fn spawn_and_wait_for_json_line(
    name: &str,
    cmd: Command,
    accept: impl FnMut(&Value) -> bool,
    timeout: Duration,
) -> Result<(ChildGuard, Value)> {
    let mut guard = ChildGuard::spawn(name, cmd)?;
    let line = guard.wait_for("the expected JSON line", timeout, accept)?;
    Ok((guard, line))
}

/// Runs a command that prints one JSON object and exits; returns that object.
pub fn run_for_json(name: &str, cmd: Command, timeout: Duration) -> Result<Value> {
    let mut guard = ChildGuard::spawn(name, cmd)?;
    guard.wait_success(timeout)?;
    guard
        .events()
        .last()
        .cloned()
        .ok_or_else(|| Error::exited(name, "a JSON line", guard.status, guard.output_tail()))
}

#[cfg(unix)]
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions. `pid` is our own child that has
        // not been reaped yet (we hold its `Child` and have not seen it exit), so the id
        // cannot have been recycled for an unrelated process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

fn read_lines<R: Read>(
    stream: R,
    label: &str,
    tail: &Mutex<VecDeque<String>>,
    verbose: bool,
    events: Option<mpsc::Sender<Value>>,
) {
    let reader = BufReader::new(stream);
    for line in reader.split(b'\n') {
        let Ok(bytes) = line else { break };
        let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
        if verbose {
            eprintln!("[{label}] {text}");
        }
        if let Some(tx) = &events {
            if text.starts_with('{') {
                if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                    // the receiver may be gone (guard dropped): nothing left to tell
                    let _ = tx.send(value);
                }
            }
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn waits_for_a_matching_json_line_and_keeps_the_others() {
        let cmd = sh(r#"echo 'hello'; echo '{"event":"a"}'; echo '{"event":"b","n":2}'; sleep 30"#);
        let (mut guard, line) =
            spawn_and_wait_for_json_line("sh", cmd, |v| v["n"] == 2, Duration::from_secs(10))
                .unwrap();
        assert_eq!(line["event"], "b");
        assert_eq!(guard.events().len(), 2);
        assert!(guard.output_tail().contains("hello"));
        let status = guard.stop().unwrap();
        assert!(!status.success(), "sleep must have been killed");
    }

    #[test]
    fn reports_exit_before_the_event() {
        let mut guard = ChildGuard::spawn("sh", sh("echo bye >&2; exit 3")).unwrap();
        let err = guard.wait_event("ready", Duration::from_secs(10)).unwrap_err();
        match &err {
            Error::Exited { status, tail, .. } => {
                assert!(status.contains('3'), "{status}");
                assert!(tail.contains("bye"), "{tail}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn reports_driver_errors() {
        let cmd = sh(r#"echo '{"event":"error","message":"no data"}'; sleep 30"#);
        let mut guard = ChildGuard::spawn("drv", cmd).unwrap();
        let err = guard.wait_event("ready", Duration::from_secs(10)).unwrap_err();
        assert!(matches!(&err, Error::Reported { message, .. } if message == "no data"), "{err}");
    }

    #[test]
    fn times_out() {
        let mut guard = ChildGuard::spawn("sleeper", sh("sleep 30")).unwrap();
        let err = guard.wait_event("ready", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }

    #[test]
    fn closing_stdin_stops_a_reader() {
        let mut guard = ChildGuard::spawn("cat", Command::new("cat")).unwrap();
        guard.send_line("{\"event\":\"echo\"}").unwrap();
        guard.wait_event("echo", Duration::from_secs(10)).unwrap();
        guard.close_stdin();
        assert!(guard.wait_exit(Duration::from_secs(10)).unwrap().success());
    }

    #[test]
    fn run_for_json_returns_the_last_object() {
        let v = run_for_json("sh", sh(r#"echo '{"event":"x","k":1}'"#), Duration::from_secs(10))
            .unwrap();
        assert_eq!(v["k"], 1);
        let err = run_for_json("sh", sh("exit 1"), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, Error::Exited { .. }), "{err}");
    }
}
