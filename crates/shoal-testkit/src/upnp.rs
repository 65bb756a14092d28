//! Port mapping on a [`crate::nat::NatHost`]'s router: Debian's `miniupnpd` (the nftables build, package
//! `miniupnpd-nftables`) answering UPnP IGD (SSDP and SOAP), NAT-PMP and PCP on the router's
//! LAN side, for tests of a client that asks its router to open a port.
//!
//! ```text
//!  test namespace ── 198.18.<i>.1 ─── wan 198.18.<i>.2  router + miniupnpd  lan 192.168.1.1
//!  (STUN responder on 198.18.<i>.1)                                             │
//!                                                                 host eth0 192.168.1.2
//! ```
//!
//! [`NatHost::with_port_mapping`] (or [`NatHost::start_port_mapping`]) starts it in the
//! foreground (`-d`) in the router's namespace, with a configuration of its own in a
//! temporary directory, and returns once it listens. A mapping it makes is a DNAT rule in the
//! router's `inet miniupnpd` table (made here: miniupnpd 2.3 fills chains but does not create
//! them); the router's filter forwards what was DNATed (`ct status dnat accept`, in
//! [`crate::nat`]), so a connection from the test namespace to
//! `<public address>:<external port>` reaches the host. [`Miniupnpd::port_mappings`] lists
//! the mappings as the kernel has them, with the description and expiry miniupnpd keeps in
//! its lease file.
//!
//! The router's public address is in 198.18.0.0/15 (benchmarking), which miniupnpd 2.3.1
//! counts as private: it would refuse to map anything ("Port forwarding is impossible"), and
//! it refuses the same address given as `ext_ip=`; `ext_allow_private_ipv4` only came with
//! 2.3.9. What it accepts is learning its public address over STUN (`ext_perform_stun=yes`),
//! from a STUN responder this module runs in the test namespace on the router's link: four
//! answers from the address asked, each showing the port it was sent from, are what a router
//! with a public address gets, so miniupnpd enables port forwarding and reports
//! `198.18.<i>.<n>` as the external address (and asks again when [`NatHost::renumber`] changes
//! it). Clients that judge the external address themselves may still call it private:
//! miniupnpc 2.2's `upnpc` says "not connected?" and needs `-i`.
//!
//! SSDP needs nothing more: the host's default route carries its M-SEARCH to 239.255.255.250
//! out of `eth0`, and miniupnpd joins the group on `lan`.
//!
//! Everything stops on drop: miniupnpd by its PID (SIGTERM, then SIGKILL), the STUN
//! responder's thread, the temporary directory.
//!
//! [`NatHost::with_port_mapping`]: crate::nat::NatHost::with_port_mapping
//! [`NatHost::start_port_mapping`]: crate::nat::NatHost::start_port_mapping
//! [`NatHost::renumber`]: crate::nat::NatHost::renumber

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::nat::{self, LAN_ROUTER};
use crate::paths::require_tool;

/// Where NAT-PMP and PCP requests go on the router ([`LAN_ROUTER`]).
pub const NATPMP_PORT: u16 = 5351;
/// Where SSDP searches (M-SEARCH) for the router go.
pub const SSDP_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);

/// Bound on miniupnpd's start: its STUN check takes milliseconds against the local responder
/// (3 s a round, 3 rounds, if answers were lost).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long miniupnpd gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Lines of miniupnpd's log kept for [`Miniupnpd::log`] (it logs at debug level with `-d`).
const LOG_LINES: usize = 400;
const POLL: Duration = Duration::from_millis(50);
/// Logged once every listener is open, right before miniupnpd's main loop.
const READY_LINE: &str = "Listening for NAT-PMP/PCP traffic on port";
/// With NAT-PMP/PCP off, the last listener's line: the SSDP sockets open right after it,
/// long before any client's search.
const READY_LINE_UPNP_ONLY: &str = "HTTP listening on port";
/// Logged when STUN found the address usable; "...now disabled" when not.
const FORWARDING_ON: &str = "Port forwarding is now enabled";

/// The nftables table miniupnpd is told to use (`upnp_table_name`, `upnp_nat_table_name`),
/// and its chains: base chains that jump to the regular ones miniupnpd adds its rules to.
/// Its own forward chain only accepts, so it decides nothing: the router's `ip filter` table
/// is what drops, and it lets DNATed flows through.
const TABLE: &str = "miniupnpd";
const TABLE_RULES: &str = "\
table inet miniupnpd {
    chain forward {
        type filter hook forward priority filter; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
";
/// Which protocols the router's miniupnpd answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocols {
    /// UPnP IGD, NAT-PMP and PCP.
    All,
    /// UPnP IGD alone (NAT-PMP and PCP off), as many home routers ship.
    UpnpOnly,
}

/// The chain of miniupnpd's DNAT rules: one per mapping.
const REDIRECT_CHAIN: &str = "prerouting_miniupnpd";

/// Why a router with miniupnpd cannot be made here, or `None` when it can: what
/// [`nat::unavailable`] needs, plus the nftables build of miniupnpd.
pub fn unavailable() -> Option<String> {
    if let Some(why) = nat::unavailable() {
        return Some(why);
    }
    let program = match miniupnpd_path() {
        Ok(p) => p,
        Err(e) => return Some(e.to_string()),
    };
    match Command::new(&program).arg("--version").stdin(Stdio::null()).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if text.contains("nftables") {
                None
            } else {
                Some(format!(
                    "{} is not the nftables build (install miniupnpd-nftables): {}",
                    program.display(),
                    text.trim()
                ))
            }
        }
        Err(e) => Some(format!("running {} --version: {e}", program.display())),
    }
}

/// `miniupnpd` on PATH, or where Debian puts it (`/usr/sbin`, not on every user's PATH).
fn miniupnpd_path() -> Result<PathBuf> {
    require_tool("miniupnpd").or_else(|e| require_tool("/usr/sbin/miniupnpd").map_err(|_| e))
}

/// One port mapping on the router, as [`Miniupnpd::port_mappings`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `"TCP"` or `"UDP"`.
    pub protocol: String,
    /// The port on the router's public address.
    pub external_port: u16,
    /// Where the router forwards it (on the LAN: [`crate::nat::LAN_HOST`] and a port).
    pub internal: SocketAddrV4,
    /// The description the client gave (UPnP's `NewPortMappingDescription`), or miniupnpd's
    /// own for the other protocols: `NAT-PMP <port> <proto>`, and `PCP MAP <nonce>` with the
    /// 12-byte nonce in hex as three native-endian 32-bit words (on x86 each group of 4 bytes
    /// reversed). From the lease file; `None` if that has no entry for this mapping.
    pub description: Option<String>,
    /// When the mapping expires (Unix time), from the lease file; `None` for no expiry or no
    /// entry.
    pub expires: Option<u64>,
}

/// miniupnpd running on a NAT router (see the module documentation); stopped on drop.
pub struct Miniupnpd {
    child: Child,
    log: Arc<Mutex<Log>>,
    reader: Option<thread::JoinHandle<()>>,
    /// `nsenter` into the router's namespace, for `nft`.
    router: Vec<OsString>,
    stun: StunResponder,
    config: PathBuf,
    lease_file: PathBuf,
    /// Holds the configuration and lease file; removed on drop.
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Log {
    lines: VecDeque<String>,
    ready: bool,
    forwarding: bool,
}

impl Miniupnpd {
    /// Starts miniupnpd for router `index` in the namespace `router` enters (a launcher:
    /// `nsenter ... --`), with the STUN responder on `stun_ip` (the test namespace's end of the
    /// router's link), and waits until it listens.
    pub(crate) fn start(
        index: u8,
        router: Vec<OsString>,
        stun_ip: Ipv4Addr,
        protocols: Protocols,
    ) -> Result<Miniupnpd> {
        let program = miniupnpd_path()?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-miniupnpd-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory for miniupnpd", e))?;
        let stun = StunResponder::start(stun_ip)?;
        nat::run_with_input(launch(&router, "nft").args(["-f", "-"]), TABLE_RULES)?;

        let config = dir.path().join("miniupnpd.conf");
        let lease_file = dir.path().join("leases");
        std::fs::write(&config, config_text(index, stun.addr, &lease_file, protocols))
            .map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        let mut cmd = launch(&router, &program);
        cmd.arg("-d")
            .arg("-f")
            .arg(&config)
            .arg("-P")
            .arg(dir.path().join("miniupnpd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {cmd:?}"), e))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let reader = child.stderr.take().map(|stderr| {
            let log = Arc::clone(&log);
            let ready_line = match protocols {
                Protocols::All => READY_LINE,
                Protocols::UpnpOnly => READY_LINE_UPNP_ONLY,
            };
            thread::spawn(move || read_log(stderr, &log, ready_line))
        });
        let mut daemon =
            Miniupnpd { child, log, reader, router, stun, config, lease_file, _dir: dir };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let name = "miniupnpd";
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let (ready, forwarding) =
                self.log.lock().map(|l| (l.ready, l.forwarding)).unwrap_or_default();
            if ready && forwarding {
                return Ok(());
            }
            if ready {
                return Err(Error::Setup(format!(
                    "miniupnpd started without port forwarding (its STUN check failed?)\n\
                     --- log ---\n{}",
                    self.log()
                )));
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.join_reader();
                    return Err(Error::exited(name, "its listeners", Some(status), self.log()));
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        name: name.into(),
                        what: "its listening line".into(),
                        timeout: READY_TIMEOUT,
                        tail: self.log(),
                    })
                }
                Ok(None) => thread::sleep(POLL),
                Err(e) => return Err(Error::io("waiting for miniupnpd", e)),
            }
        }
    }

    /// miniupnpd's process id (in the router's namespace; `nsenter` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its lease file: `PROTO:external port:internal address:internal port:expiry:description`
    /// a line.
    pub fn lease_file(&self) -> &Path {
        &self.lease_file
    }

    /// Where its STUN requests go (the responder in the test namespace).
    pub fn stun_addr(&self) -> SocketAddrV4 {
        self.stun.addr
    }

    /// The last lines miniupnpd logged (debug level: every SSDP, SOAP, NAT-PMP and PCP
    /// request), for a failure message.
    pub fn log(&self) -> String {
        match self.log.lock() {
            Ok(l) => l.lines.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    /// The router's port mappings now: the DNAT rules miniupnpd has in the kernel (`nft -j
    /// list chain inet miniupnpd prerouting_miniupnpd`), in rule order, each with the
    /// description and expiry of its lease file entry.
    pub fn port_mappings(&self) -> Result<Vec<PortMapping>> {
        let mut cmd = launch(&self.router, "nft");
        cmd.args(["-j", "list", "chain", "inet", TABLE, REDIRECT_CHAIN]);
        let out = cmd.output().map_err(|e| Error::io(format!("running {cmd:?}"), e))?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "{cmd:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut mappings = parse_redirects(&String::from_utf8_lossy(&out.stdout))?;
        // Absent until the first mapping.
        let leases = std::fs::read_to_string(&self.lease_file).unwrap_or_default();
        let leases = parse_leases(&leases);
        for m in &mut mappings {
            if let Some((expires, description)) = leases.get(&(m.protocol.clone(), m.external_port))
            {
                m.expires = (*expires != 0).then_some(*expires);
                m.description = Some(description.clone());
            }
        }
        Ok(mappings)
    }

    /// Polls [`Miniupnpd::port_mappings`] (every 50 ms, up to `timeout`) until `accept` takes
    /// them; returns them. A client maps asynchronously: wait for its mapping to appear, or to
    /// be gone after it stops.
    pub fn wait_port_mappings(
        &self,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&[PortMapping]) -> bool,
    ) -> Result<Vec<PortMapping>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mappings = self.port_mappings()?;
            if accept(&mappings) {
                return Ok(mappings);
            }
            if Instant::now() >= deadline {
                let mut tail = format!("port mappings: {mappings:?}\n--- miniupnpd log ---\n");
                let _ = write!(tail, "{}", self.log());
                return Err(Error::Timeout {
                    name: "the router's port mappings".into(),
                    what: what.into(),
                    timeout,
                    tail,
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Stops miniupnpd (SIGTERM, SIGKILL after a grace period); done on drop.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped (try_wait saw it running),
                // so the PID is still its.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        self.join_reader();
    }

    /// Waits (bounded) for the log reader to reach the end of miniupnpd's stderr.
    fn join_reader(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        if let Some(reader) = self.reader.take() {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Miniupnpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command running `program` through `launcher` (`nsenter -t <pid> -n --`).
fn launch(launcher: &[OsString], program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(&launcher[0]);
    cmd.args(&launcher[1..]).arg(program);
    cmd
}

/// miniupnpd's configuration for router `index`.
fn config_text(index: u8, stun: SocketAddrV4, lease_file: &Path, protocols: Protocols) -> String {
    let lan = LAN_ROUTER.octets();
    format!(
        "\
# Written by shoal_testkit::upnp for NAT router {index}.
ext_ifname=wan
listening_ip=lan
# Any free port for the UPnP HTTP (SOAP) server: clients learn it from SSDP.
http_port=0
enable_upnp=yes
# NAT-PMP and, in miniupnpd 2.x, PCP (both on {lan_router}:{NATPMP_PORT}).
enable_natpmp={natpmp}
ipv6_disable=yes
# Clients may only map ports to their own address.
secure_mode=yes
system_uptime=no
notify_interval=60
clean_ruleset_interval=600
# Fixed, so that no system uuid is needed (Debian's init script would make one).
uuid=5407a1e5-0000-4000-8000-0000000000{index:02x}
friendly_name=Shoal test router {index}
lease_file={lease_file}
# The WAN address is in 198.18.0.0/15, which miniupnpd calls private and refuses as ext_ip:
# STUN (the responder in the test namespace) is how it learns that address is reachable.
ext_perform_stun=yes
ext_stun_host={stun_ip}
ext_stun_port={stun_port}
# Chains of the table made for it (miniupnpd 2.3 does not create them).
upnp_table_name={TABLE}
upnp_nat_table_name={TABLE}
upnp_forward_chain=miniupnpd
upnp_nat_chain={REDIRECT_CHAIN}
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 {a}.{b}.{c}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
        lan_router = LAN_ROUTER,
        natpmp = if protocols == Protocols::All { "yes" } else { "no" },
        lease_file = lease_file.display(),
        stun_ip = stun.ip(),
        stun_port = stun.port(),
        a = lan[0],
        b = lan[1],
        c = lan[2],
    )
}

/// Reads miniupnpd's stderr into `log` (the last [`LOG_LINES`]) and notes the lines
/// [`Miniupnpd::wait_ready`] waits for.
fn read_log(stderr: impl std::io::Read, log: &Mutex<Log>, ready_line: &str) {
    let verbose = std::env::var_os("SHOAL_TEST_VERBOSE").is_some_and(|v| v != "0");
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if verbose {
            eprintln!("[miniupnpd] {line}");
        }
        let Ok(mut log) = log.lock() else { break };
        log.ready |= line.contains(ready_line);
        log.forwarding |= line.contains(FORWARDING_ON);
        if line.contains("Port forwarding is now disabled") {
            log.forwarding = false;
        }
        log.lines.push_back(line);
        if log.lines.len() > LOG_LINES {
            log.lines.pop_front();
        }
    }
}

/// The mappings in `nft -j list chain` output of miniupnpd's redirect chain: each rule's
/// protocol (miniupnpd matches the IPv4 header's protocol byte, `@nh,72,8`), destination
/// port and DNAT target. Rules without all three are skipped.
fn parse_redirects(json: &str) -> Result<Vec<PortMapping>> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::Setup(format!("nft's JSON ({e}): {json}")))?;
    let items = value.get("nftables").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut mappings = Vec::new();
    for item in &items {
        let Some(exprs) = item.pointer("/rule/expr").and_then(Value::as_array) else {
            continue;
        };
        let (mut protocol, mut port, mut target) = (None, None, None);
        for expr in exprs {
            if let Some(m) = expr.get("match") {
                let (left, right) = (&m["left"], &m["right"]);
                let payload = &left["payload"];
                if payload["base"] == "nh" && payload["offset"] == 72 && payload["len"] == 8 {
                    protocol = right.as_u64().and_then(protocol_name);
                } else if left.pointer("/meta/key").is_some_and(|k| k == "l4proto") {
                    protocol = right.as_str().map(str::to_ascii_uppercase);
                } else if payload["field"] == "dport" {
                    port = right.as_u64().and_then(|p| u16::try_from(p).ok());
                    if let Some(p @ ("tcp" | "udp")) = payload["protocol"].as_str() {
                        protocol = Some(p.to_ascii_uppercase());
                    }
                }
            } else if let Some(dnat) = expr.get("dnat") {
                let addr = dnat["addr"].as_str().and_then(|a| a.parse::<Ipv4Addr>().ok());
                let to = dnat["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                target = addr.zip(to).map(|(a, p)| SocketAddrV4::new(a, p));
            }
        }
        if let (Some(protocol), Some(external_port), Some(internal)) = (protocol, port, target) {
            mappings.push(PortMapping {
                protocol,
                external_port,
                internal,
                description: None,
                expires: None,
            });
        }
    }
    Ok(mappings)
}

fn protocol_name(number: u64) -> Option<String> {
    match number {
        6 => Some("TCP".into()),
        17 => Some("UDP".into()),
        _ => None,
    }
}

/// The lease file's entries by (protocol, external port): (expiry, description).
fn parse_leases(text: &str) -> HashMap<(String, u16), (u64, String)> {
    let mut leases = HashMap::new();
    for line in text.lines() {
        // The description comes last and may itself hold colons.
        let fields: Vec<&str> = line.splitn(6, ':').collect();
        let [protocol, eport, _iaddr, _iport, expires, description] = fields[..] else {
            continue;
        };
        if let (Ok(eport), Ok(expires)) = (eport.parse(), expires.parse()) {
            leases.insert((protocol.to_owned(), eport), (expires, description.to_owned()));
        }
    }
    leases
}

/// A STUN server just good enough for miniupnpd's check (RFC 5389 Binding: XOR-MAPPED-
/// ADDRESS, from the address asked, CHANGE-REQUEST ignored), on a port of its own so that it
/// never meets a real STUN server a test runs.
struct StunResponder {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StunResponder {
    fn start(ip: Ipv4Addr) -> Result<StunResponder> {
        let socket = UdpSocket::bind((ip, 0))
            .map_err(|e| Error::io(format!("binding a STUN responder on {ip}"), e))?;
        let addr = match socket.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            other => return Err(Error::Setup(format!("STUN responder bound to {other:?}"))),
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| Error::io("setting the STUN responder's timeout", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                if let Some(answer) = binding_response(&buf[..n], from) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Ok(StunResponder { addr, stop, thread: Some(thread) })
    }
}

impl Drop for StunResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Ends within one read timeout.
            let _ = thread.join();
        }
    }
}

/// The Binding success response to `request` from `from`, or `None` if it is not a Binding
/// request (or not from IPv4).
fn binding_response(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let SocketAddr::V4(from) = from else { return None };
    if request.len() < 20 || request[..2] != [0x00, 0x01] {
        return None;
    }
    // Magic cookie and transaction id, echoed; the address is XORed with the cookie.
    let cookie = &request[4..8];
    let mut answer = vec![0x01, 0x01, 0x00, 12];
    answer.extend_from_slice(&request[4..20]);
    answer.extend_from_slice(&[0x00, 0x20, 0x00, 8, 0x00, 0x01]);
    let port = from.port().to_be_bytes();
    answer.extend_from_slice(&[port[0] ^ cookie[0], port[1] ^ cookie[1]]);
    answer.extend(from.ip().octets().iter().zip(cookie).map(|(a, c)| a ^ c));
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::LAN_HOST;

    #[test]
    fn redirect_rules_become_mappings() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"chain": {"family": "inet", "table": "miniupnpd", "name": "prerouting_miniupnpd"}},
          {"rule": {"expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "wan"}},
            {"match": {"op": "==", "left": {"payload": {"base": "nh", "offset": 72, "len": 8}},
              "right": 17}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
              "right": 17005}},
            {"dnat": {"family": "ip", "addr": "192.168.1.2", "port": 7005}}]}},
          {"rule": {"expr": [{"counter": {"packets": 0, "bytes": 0}}]}}]}"#;
        let mut mappings = parse_redirects(json).unwrap();
        assert_eq!(mappings.len(), 1, "{mappings:?}");
        let m = mappings.remove(0);
        assert_eq!((m.protocol.as_str(), m.external_port), ("UDP", 17005));
        assert_eq!(m.internal, SocketAddrV4::new(LAN_HOST, 7005));
    }

    #[test]
    fn lease_lines_keep_colons_in_descriptions() {
        let leases = parse_leases("TCP:7000:192.168.1.2:7000:1797251859:shoal: test\nbad\n");
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[&("TCP".to_owned(), 7000)], (1797251859, "shoal: test".to_owned()));
    }

    #[test]
    fn a_binding_request_gets_its_xor_mapped_address() {
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend(1..=12u8);
        let from = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 2), 35652);
        let answer = binding_response(&request, SocketAddr::V4(from)).unwrap();
        assert_eq!(answer.len(), 32);
        assert_eq!(&answer[..4], &[0x01, 0x01, 0x00, 12]);
        assert_eq!(&answer[4..20], &request[4..20]);
        let port = u16::from_be_bytes([answer[26], answer[27]]) ^ 0x2112;
        let ip: Vec<u8> =
            answer[28..32].iter().zip([0x21, 0x12, 0xa4, 0x42]).map(|(a, c)| a ^ c).collect();
        assert_eq!((port, &ip[..]), (35652, &[198, 18, 1, 2][..]));
        assert!(binding_response(&request[..19], SocketAddr::V4(from)).is_none());
    }
}
