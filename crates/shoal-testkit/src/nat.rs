//! Hosts behind NAT routers, for tests of NAT traversal (WebRTC's server-reflexive candidates).
//!
//! The test's own network namespace ([`crate::netns`]) plays the internet: servers (a
//! tracker, a STUN server) listen there on [`internet_servers`]. Each
//! [`NatHost`] adds two namespaces behind it, the way a home connection looks:
//!
//! ```text
//!  test namespace ── nat<i> 198.18.<i>.1 ─── wan 198.18.<i>.2  router  lan 192.168.1.1
//!                                                                        │
//!                                                          host  eth0 192.168.1.2
//! ```
//!
//! The router masquerades what its LAN sends out (nftables) and forwards from outside only
//! packets of flows the LAN started (conntrack). Linux's masquerade keeps a flow's source port
//! where it can and reuses one mapping for every destination (endpoint-independent mapping),
//! while its filter is address- and port-dependent: a NAT that STUN plus ICE's checks in both
//! directions get through, and that host candidates alone do not. Every host has the same
//! private address, as every home network does, so an address in an offer says nothing about
//! who sent it.
//!
//! A router can also map ports for its host, as a home router with UPnP IGD and NAT-PMP/PCP
//! does: [`NatHost::with_port_mapping`] runs miniupnpd on it ([`crate::upnp`]).
//!
//! Each namespace is held by one `cat` process (made with `unshare -n`, entered with
//! `nsenter -n`) and goes away when that is killed, on drop. Needs root, `nsenter` and `nft`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};
use crate::paths::require_tool;
use crate::upnp::{Miniupnpd, PortMapping, Protocols};

/// The address of every NAT host on its LAN.
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// The router's address on the LAN: the hosts' default route, and where they find its
/// miniupnpd ([`NatHost::with_port_mapping`]).
pub const LAN_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

/// Where servers on the "internet" listen: an address of the test namespace's own (on `lo`,
/// so it exists before any link does), reached from every NAT host through its router's
/// default route. Outside 198.18.0.0/16, where the links are.
pub const INTERNET_SERVERS: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// Adds [`INTERNET_SERVERS`] to the calling process's namespace (once; again is a no-op) and
/// returns it. Call it inside the test's namespace, before servers bind it.
pub fn internet_servers() -> Result<Ipv4Addr> {
    let shown = Command::new("ip")
        .args(["-4", "addr", "show", "dev", "lo"])
        .output()
        .map_err(|e| Error::io("running ip addr show", e))?;
    if !String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {INTERNET_SERVERS}/")) {
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{INTERNET_SERVERS}/32"),
            "dev",
            "lo",
        ]))?;
    }
    Ok(INTERNET_SERVERS)
}

/// Why NAT hosts cannot be made here, or `None` when they can (the tools are installed and we
/// are root: `nsenter` into namespaces made from a user namespace is not supported).
pub fn unavailable() -> Option<String> {
    for tool in ["nsenter", "nft", "unshare", "ip", "sysctl"] {
        if let Err(e) = require_tool(tool) {
            return Some(e.to_string());
        }
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("NAT namespaces need root".into());
    }
    None
}

/// A host behind its own NAT router (see the module documentation).
pub struct NatHost {
    /// miniupnpd, when started: first, so that it stops before its namespace goes.
    port_mapper: Option<Miniupnpd>,
    index: u8,
    /// The last byte of the router's public address (`198.18.<index>.<public>`).
    public: u8,
    host: Namespace,
    router: Namespace,
}

impl NatHost {
    /// Makes router and host number `index` (1-254, one per test namespace) and links the
    /// router to the calling process's namespace, which then forwards between its links.
    pub fn new(index: u8) -> Result<NatHost> {
        if !(1..=254).contains(&index) {
            return Err(Error::Setup(format!("NAT host index {index}: 1-254")));
        }
        let router = Namespace::new(&format!("nat router {index}"))?;
        let host = Namespace::new(&format!("nat host {index}"))?;
        let (outside, inside) = (Self::link_name(index), Self::internet_side(index));
        let public = Ipv4Addr::new(198, 18, index, 2);

        run(Command::new("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
        run(Command::new("ip")
            .args(["link", "add", &outside, "type", "veth", "peer", "name", "wan", "netns"])
            .arg(router.pid.to_string()))?;
        run(Command::new("ip").args(["addr", "add", &format!("{inside}/24"), "dev", &outside]))?;
        run(Command::new("ip").args(["link", "set", &outside, "up"]))?;

        run(router
            .command("ip")
            .args(["link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns"])
            .arg(host.pid.to_string()))?;
        run(router.command("ip").args(["addr", "add", &format!("{public}/24"), "dev", "wan"]))?;
        run(router.command("ip").args(["addr", "add", &format!("{LAN_ROUTER}/24"), "dev", "lan"]))?;
        run(router.command("ip").args(["link", "set", "wan", "up"]))?;
        run(router.command("ip").args(["link", "set", "lan", "up"]))?;
        run(router.command("ip").args(["route", "add", "default", "via", &inside.to_string()]))?;
        run(router.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
        run_with_input(router.command("nft").args(["-f", "-"]), ROUTER_RULES)?;

        run(host.command("ip").args(["addr", "add", &format!("{LAN_HOST}/24"), "dev", "eth0"]))?;
        run(host.command("ip").args(["link", "set", "eth0", "up"]))?;
        run(host.command("ip").args(["route", "add", "default", "via", &LAN_ROUTER.to_string()]))?;
        Ok(NatHost { port_mapper: None, index, public: 2, host, router })
    }

    /// [`NatHost::new`] with miniupnpd on the router ([`NatHost::start_port_mapping`]).
    pub fn with_port_mapping(index: u8, protocols: Protocols) -> Result<NatHost> {
        let mut host = NatHost::new(index)?;
        host.start_port_mapping(protocols)?;
        Ok(host)
    }

    /// Starts miniupnpd on the router: UPnP IGD (found by SSDP on the LAN), NAT-PMP and PCP
    /// (on [`LAN_ROUTER`]:5351), mapping ports 1024-65535 of the public address to the same
    /// range on the host's own address only. Returns once it listens (bounded); it stops
    /// when this host is dropped. Needs what [`crate::upnp::unavailable`] checks.
    pub fn start_port_mapping(&mut self, protocols: Protocols) -> Result<&Miniupnpd> {
        if self.port_mapper.is_some() {
            return Err(Error::Setup(format!("router {} already runs miniupnpd", self.index)));
        }
        let started = Miniupnpd::start(
            self.index,
            self.router.launcher(),
            Self::internet_side(self.index),
            protocols,
        )?;
        Ok(self.port_mapper.insert(started))
    }

    /// The router's miniupnpd, if [`NatHost::start_port_mapping`] started it.
    pub fn port_mapper(&self) -> Option<&Miniupnpd> {
        self.port_mapper.as_ref()
    }

    /// The router's port mappings now ([`Miniupnpd::port_mappings`]); an error if it does not
    /// run miniupnpd.
    pub fn port_mappings(&self) -> Result<Vec<PortMapping>> {
        self.port_mapper
            .as_ref()
            .ok_or_else(|| Error::Setup(format!("router {} runs no miniupnpd", self.index)))?
            .port_mappings()
    }

    /// The address the outside sees this host's flows come from: the router's.
    pub fn public_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, self.public)
    }

    /// Gives the router a new public address (the next one up), as an ISP does when a lease
    /// ends or the line reconnects; returns it. Removing the old address makes the kernel
    /// forget every mapping masqueraded to it, so the host's flows come out from the new one.
    pub fn renumber(&mut self) -> Result<Ipv4Addr> {
        if self.public == 254 {
            return Err(Error::Setup("no public address left to move to".into()));
        }
        let old = self.public_addr();
        self.public += 1;
        let new = self.public_addr();
        let router = &self.router;
        // Old first: deleting a primary address takes its secondaries with it.
        run(router.command("ip").args(["addr", "del", &format!("{old}/24"), "dev", "wan"]))?;
        run(router.command("ip").args(["addr", "add", &format!("{new}/24"), "dev", "wan"]))?;
        // The default route went with the old address's subnet route.
        let gateway = Self::internet_side(self.index).to_string();
        run(router.command("ip").args(["route", "replace", "default", "via", &gateway]))?;
        Ok(new)
    }

    /// This host's address on its LAN ([`LAN_HOST`], the same for every host).
    pub fn lan_addr(&self) -> Ipv4Addr {
        LAN_HOST
    }

    /// The test namespace's address on the link to this router: where a peer on the
    /// internet that must send from the interface facing the router binds (libtorrent sends
    /// uTP only from a socket on an interface with a route to the peer, not from
    /// [`INTERNET_SERVERS`] on `lo`).
    pub fn internet_link_addr(&self) -> Ipv4Addr {
        Self::internet_side(self.index)
    }

    /// The test namespace's address on the link to router `index`: the router's default
    /// route.
    fn internet_side(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, index, 1)
    }

    /// A command that runs `program` on this host (inside its namespace; `nsenter` execs it,
    /// so the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.host.command(program)
    }

    /// What [`NatHost::command`] puts before a program, for harnesses that build their own
    /// command line ([`crate::BrowserOpts::launcher`]).
    pub fn launcher(&self) -> Vec<OsString> {
        self.host.launcher()
    }

    /// The router's rules with their packet counters (how many the filter let through and
    /// dropped): for a failure message.
    pub fn router_state(&self) -> String {
        let out = self.router.command("nft").args(["list", "ruleset"]).output();
        match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("nft list ruleset: {e}"),
        }
    }

    fn link_name(index: u8) -> String {
        format!("nat{index}")
    }
}

/// Masquerade out of `wan`; forward LAN → WAN, and back only what conntrack knows, or what
/// a port mapping sends in. The counters show, in [`NatHost::router_state`], how many packets
/// the filter dropped.
///
/// A port mapping is a DNAT rule miniupnpd adds in a table of its own ([`crate::upnp`]); the
/// new flows it starts from outside are no established ones, and a drop here is final whatever
/// another table accepts, so this filter must let them through itself: `ct status dnat` (as
/// OpenWrt's firewall does for port forwards). Without miniupnpd nothing is DNATed and the
/// rule never matches.
///
/// The input chain matters as much as the forward one: a packet from outside to the router's
/// own address that nobody asked for (a peer's ICE check that arrives before our host has
/// sent anything to that peer) must be dropped before conntrack confirms an entry for it.
/// Otherwise that entry occupies the very tuple our host's first packet to that peer would
/// be mapped to, masquerade picks another port, and the NAT turns symmetric: the mapping STUN
/// reported is not the one the peer sees. Home routers drop such packets (a WAN zone that
/// rejects input), so they keep one mapping per host socket.
const ROUTER_RULES: &str = "\
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan\" masquerade
    }
}
table ip filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related counter accept
        ct status dnat counter accept
        iifname \"lan\" oifname \"wan\" counter accept
        counter drop
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname \"wan\" ct state established,related accept
        iifname \"wan\" counter drop
    }
}
";

/// A network namespace held open by a `cat` that lives until it is killed or its stdin
/// closes.
struct Namespace {
    pid: u32,
    holder: Child,
}

impl Namespace {
    fn new(name: &str) -> Result<Namespace> {
        let mut holder = Command::new("unshare")
            .args(["-n", "sh", "-c", "ip link set lo up && echo ready && exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io(format!("starting the {name} namespace"), e))?;
        // Links can be moved into it only once it exists: wait for the shell to say so.
        let mut line = String::new();
        let stdout = holder.stdout.take().ok_or_else(|| Error::Setup("no stdout".into()))?;
        let read = BufReader::new(stdout).read_line(&mut line);
        if read.is_err() || line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(Error::Setup(format!("the {name} namespace did not start: {read:?}")));
        }
        Ok(Namespace { pid: holder.id(), holder })
    }

    fn launcher(&self) -> Vec<OsString> {
        ["nsenter", "-t", &self.pid.to_string(), "-n", "--"].map(OsString::from).to_vec()
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let launcher = self.launcher();
        let mut cmd = Command::new(&launcher[0]);
        cmd.args(&launcher[1..]).arg(program);
        cmd
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Runs a setup command to its end; a failure carries its stderr.
fn run(cmd: &mut Command) -> Result<()> {
    run_with_input(cmd, "")
}

/// [`run`] with `input` on the command's stdin.
pub(crate) fn run_with_input(cmd: &mut Command, input: &str) -> Result<()> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::io(format!("starting {cmd:?}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| Error::io(format!("writing to {cmd:?}"), e))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::io(format!("running {cmd:?}"), e))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
