//! opentracker on loopback (through `tests/peers/opentracker.py`), for tests of tracker
//! announces and of peers finding each other through a tracker.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::net::loopback_ip;
use crate::paths::{peer_script, require_tool, PYTHON};
use crate::process::ChildGuard;

/// A running opentracker; stopped when dropped.
pub struct Tracker {
    process: ChildGuard,
    addr: SocketAddr,
    announce: String,
    udp: String,
}

/// Starts opentracker on a fresh loopback address, tracking the given hex v1 info hashes
/// (Debian's build tracks nothing that is not whitelisted; see [`Tracker::allow`]).
pub fn opentracker(info_hashes: &[&str]) -> Result<Tracker> {
    opentracker_on(loopback_ip(), info_hashes)
}

/// [`opentracker`] on a chosen address.
pub fn opentracker_on(ip: Ipv4Addr, info_hashes: &[&str]) -> Result<Tracker> {
    require_tool(PYTHON)?;
    require_tool("opentracker")?;
    for hash in info_hashes {
        check_hash(hash)?;
    }
    let mut cmd = Command::new(PYTHON);
    cmd.arg(peer_script("opentracker.py")?).arg("--ip").arg(ip.to_string());
    for hash in info_hashes {
        cmd.arg("--allow").arg(hash);
    }
    let mut process = ChildGuard::spawn(format!("opentracker@{ip}"), cmd)?;
    let ready = process.wait_event("ready", Duration::from_secs(30))?;
    let field =
        |key: &str| -> Result<String> {
            ready.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
                Error::Setup(format!("opentracker.py ready event lacks {key}: {ready}"))
            })
        };
    let port =
        ready.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).ok_or_else(
            || Error::Setup(format!("opentracker.py ready event lacks a port: {ready}")),
        )?;
    Ok(Tracker {
        announce: field("announce")?,
        udp: field("udp")?,
        addr: SocketAddr::from((ip, port)),
        process,
    })
}

impl Tracker {
    /// `http://IP:PORT/announce`
    pub fn announce_url(&self) -> &str {
        &self.announce
    }

    /// `udp://IP:PORT` (BEP 15, same port)
    pub fn udp_url(&self) -> &str {
        &self.udp
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an info hash to the whitelist and waits until opentracker has reloaded it.
    pub fn allow(&mut self, info_hash: &str) -> Result<()> {
        check_hash(info_hash)?;
        let hash = info_hash.to_ascii_lowercase();
        self.process.send_line(&json!({"cmd": "allow", "info_hash": hash}).to_string())?;
        self.process
            .wait_for("whitelist reload", Duration::from_secs(10), |v| {
                v["event"] == "allowed" && v["info_hash"] == hash.as_str()
            })
            .map(drop)
    }

    /// The driver process, for its event log and output.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.process
    }
}

fn check_hash(hash: &str) -> Result<()> {
    if hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::Setup(format!("not a hex v1 info hash (40 hex digits): {hash:?}")))
    }
}
