//! Opening the listen port on the home router: PCP and NAT-PMP (`crab_nat`) or UPnP IGD
//! (`igd-next`), whichever the gateway answers, renewed before the lease ends and removed at
//! shutdown. Without it, a peer behind a NAT can dial out but nobody can dial in, and two
//! such peers never meet.
//!
//! One task per session owns the mappings: it looks for a gateway (both protocols at once,
//! each bounded in time), maps the TCP port and the UDP ones (uTP's, and the DHT's when it
//! has a port of its own), renews
//! at half the lease, looks again when a renewal fails or nothing answered (every
//! [`RETRY_INTERVAL`]), and on [`PortMapper::shutdown`] deletes what it made.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long a mapping is asked for; it is renewed at half of it.
const LEASE: Duration = Duration::from_secs(60 * 60);
/// How long the search for a UPnP gateway listens for answers.
const UPNP_SEARCH: Duration = Duration::from_secs(2);
/// PCP/NAT-PMP: 250 ms, then 500 ms, then 1 s for an answer (RFC 6886 starts at 250 ms and
/// doubles; nine tries would take a minute, too long for a gateway that never answers).
const PMP_TIMEOUTS: crab_nat::TimeoutConfig = crab_nat::TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};
/// When nothing was mapped (no gateway answered, or one refused), the next try.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Deleting the mappings at shutdown waits no longer than this.
const REMOVE_DEADLINE: Duration = Duration::from_secs(3);
/// A stop while the gateway is being asked waits this long for its answer, so that what it
/// granted is deleted too (a LAN gateway answers in milliseconds; a search that nobody
/// answers is not waited for: nothing was granted).
const STOP_DURING_SEARCH: Duration = Duration::from_millis(500);
/// A gateway that only grants permanent mappings is asked again this often (it may have
/// rebooted and forgotten them).
const PERMANENT_REFRESH: Duration = Duration::from_secs(30 * 60);
const DESCRIPTION: &str = "Shoal";

/// Which protocol holds the mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingProtocol {
    Pcp,
    NatPmp,
    Upnp,
}

impl MappingProtocol {
    /// The name in `--json` events and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            MappingProtocol::Pcp => "pcp",
            MappingProtocol::NatPmp => "natpmp",
            MappingProtocol::Upnp => "upnp",
        }
    }
}

/// The ports to open: TCP always; UDP where peers dial uTP (the listen port's UDP side, or
/// the DHT's when uTP is off); the DHT's own when it listens elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub tcp: u16,
    pub udp: Option<u16>,
    pub dht: Option<u16>,
}

impl Ports {
    /// What to ask the gateway for, in order: the TCP port first (without it nothing else is
    /// worth having).
    fn wanted(&self) -> Vec<(Role, u16)> {
        let mut wanted = vec![(Role::Tcp, self.tcp)];
        wanted.extend(self.udp.map(|p| (Role::Udp, p)));
        wanted.extend(self.dht.filter(|&p| Some(p) != self.udp).map(|p| (Role::Dht, p)));
        wanted
    }
}

/// What a mapping is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Tcp,
    Udp,
    Dht,
}

impl Role {
    fn is_udp(self) -> bool {
        self != Role::Tcp
    }
}

/// What the router forwards to us, as the internet sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub protocol: MappingProtocol,
    pub tcp: SocketAddrV4,
    pub udp: Option<SocketAddrV4>,
    /// The DHT's own UDP port, when it is not `udp`.
    pub dht: Option<SocketAddrV4>,
}

impl Mapped {
    fn new(protocol: MappingProtocol, granted: &[(Role, SocketAddrV4)]) -> Option<Mapped> {
        let find = |role| granted.iter().find(|(r, _)| *r == role).map(|(_, a)| *a);
        Some(Mapped { protocol, tcp: find(Role::Tcp)?, udp: find(Role::Udp), dht: find(Role::Dht) })
    }
}

/// The TCP port trackers and the DHT are told: the listen port, or the router's external
/// port for it while a mapping that differs holds (a gateway that had ours taken gives
/// another). Shared by the session's torrents; the mapper changes it.
#[derive(Clone, Debug)]
pub struct AnnouncedPort(Arc<AtomicU16>);

impl AnnouncedPort {
    pub fn new(listen_port: u16) -> AnnouncedPort {
        AnnouncedPort(Arc::new(AtomicU16::new(listen_port)))
    }

    pub fn get(&self) -> u16 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, port: u16) {
        self.0.store(port, Ordering::Relaxed);
    }
}

/// What the mapper knows so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingState {
    /// The first search has ended (mapped or not).
    pub searched: bool,
    pub mapped: Option<Mapped>,
}

#[derive(Debug, thiserror::Error)]
enum MapError {
    #[error("no default gateway (IPv4)")]
    NoGateway,
    #[error("no UPnP gateway answered: {0}")]
    UpnpSearch(#[from] igd_next::SearchError),
    #[error("the UPnP gateway refused the mapping: {0}")]
    UpnpAdd(String),
    #[error("the UPnP gateway did not tell its external address: {0}")]
    UpnpExternal(#[from] igd_next::GetExternalIpError),
    #[error("{0}")]
    Pmp(#[from] crab_nat::MappingFailure),
    #[error("NAT-PMP external address: {0}")]
    PmpExternal(#[from] crab_nat::natpmp::Failure),
    #[error("the gateway's external address is IPv6")]
    NotIpv4,
}

/// The session's port mapper (see the module documentation).
pub struct PortMapper {
    state: watch::Receiver<MappingState>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PortMapper {
    /// Starts mapping `ports` to `local_ip` (the address the gateway sees us at; when `None`,
    /// the one the route to the gateway leaves from), keeping `announced` to the external TCP
    /// port while a mapping holds.
    pub fn start(ports: Ports, local_ip: Option<Ipv4Addr>, announced: AnnouncedPort) -> PortMapper {
        let (state_tx, state) = watch::channel(MappingState::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let publish = move |new: MappingState| {
            announced.set(announced_port(ports, &new));
            state_tx.send_replace(new);
        };
        let task = tokio::spawn(run(ports, local_ip, publish, stop_rx));
        PortMapper { state, stop: Mutex::new(Some(stop_tx)), task: Mutex::new(Some(task)) }
    }

    pub fn state(&self) -> MappingState {
        self.state.borrow().clone()
    }

    /// Follows the state as it changes (for a report once the search has ended).
    pub fn watch(&self) -> watch::Receiver<MappingState> {
        self.state.clone()
    }

    /// Deletes the mappings from the gateway (bounded in time) and stops.
    pub async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            // The task bounds its own removal; this bounds a task stuck elsewhere.
            let bound = STOP_DURING_SEARCH + REMOVE_DEADLINE + Duration::from_secs(1);
            let _ = tokio::time::timeout(bound, task).await;
        }
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        // Without `shutdown`, the task is told to stop and deletes the mappings on its own
        // while the runtime lives (a gateway that grants only permanent mappings would keep
        // them forever).
        if let Some(stop) = self.stop.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

async fn run(
    ports: Ports,
    local_ip: Option<Ipv4Addr>,
    state: impl Fn(MappingState),
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let mut search = Box::pin(map_ports(ports, local_ip));
        let found = tokio::select! {
            found = &mut search => found,
            _ = &mut stop => {
                if let Ok(Ok(held)) = tokio::time::timeout(STOP_DURING_SEARCH, search).await {
                    let _ = tokio::time::timeout(REMOVE_DEADLINE, held.remove()).await;
                }
                return;
            }
        };
        let mut held = match found {
            Ok(held) => held,
            Err(e) => {
                tracing::info!("port mapping: {e}");
                state(MappingState { searched: true, mapped: None });
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_INTERVAL) => continue,
                    _ = &mut stop => return,
                }
            }
        };
        tracing::info!(
            "port mapping ({}): {} forwarded to us",
            held.mapped.protocol.name(),
            held.mapped.tcp
        );
        state(MappingState { searched: true, mapped: Some(held.mapped.clone()) });
        loop {
            tokio::select! {
                _ = tokio::time::sleep(held.renew_in()) => {}
                _ = &mut stop => {
                    let _ = tokio::time::timeout(REMOVE_DEADLINE, held.remove()).await;
                    state(MappingState { searched: true, mapped: None });
                    return;
                }
            }
            // A renewal (UPnP: HTTP requests) does not hold up a stop.
            let renewed = tokio::select! {
                renewed = held.renew() => Some(renewed),
                _ = &mut stop => None,
            };
            match renewed {
                None => {
                    let _ = tokio::time::timeout(REMOVE_DEADLINE, held.remove()).await;
                    state(MappingState { searched: true, mapped: None });
                    return;
                }
                Some(Ok(())) => {
                    state(MappingState { searched: true, mapped: Some(held.mapped.clone()) });
                }
                Some(Err(e)) => {
                    tracing::info!("port mapping lost: {e}");
                    state(MappingState { searched: true, mapped: None });
                    break;
                }
            }
        }
    }
}

/// The TCP port peers on the internet reach us at: the router's while a mapping holds.
fn announced_port(ports: Ports, state: &MappingState) -> u16 {
    state.mapped.as_ref().map_or(ports.tcp, |m| m.tcp.port())
}

/// Mappings held at one gateway.
struct Held {
    mapped: Mapped,
    at: Gateway,
}

enum Gateway {
    Pmp { mappings: Vec<(Role, crab_nat::PortMapping)> },
    Upnp { gateway: igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>, entries: Vec<UpnpEntry> },
}

struct UpnpEntry {
    protocol: igd_next::PortMappingProtocol,
    external_port: u16,
    local: SocketAddr,
    /// Seconds; 0 when the gateway grants only permanent mappings.
    lease: u32,
}

impl Held {
    fn renew_in(&self) -> Duration {
        match &self.at {
            Gateway::Pmp { mappings } => mappings
                .iter()
                .map(|(_, m)| Duration::from_secs(u64::from(m.lifetime()) / 2))
                .min()
                .unwrap_or(LEASE / 2)
                .max(Duration::from_secs(10)),
            Gateway::Upnp { entries, .. } => entries
                .iter()
                .map(|e| match e.lease {
                    0 => PERMANENT_REFRESH,
                    s => Duration::from_secs(u64::from(s) / 2),
                })
                .min()
                .unwrap_or(LEASE / 2)
                .max(Duration::from_secs(10)),
        }
    }

    async fn renew(&mut self) -> Result<(), MapError> {
        match &mut self.at {
            Gateway::Pmp { mappings } => {
                for (_, mapping) in mappings.iter_mut() {
                    mapping.renew().await?;
                }
                // A gateway may hand out another external port (PCP: address) on renewal.
                let ip = mappings
                    .first()
                    .and_then(|(_, tcp)| pcp_external_ip(tcp))
                    .unwrap_or(*self.mapped.tcp.ip());
                let granted: Vec<_> = mappings
                    .iter()
                    .map(|(role, m)| (*role, SocketAddrV4::new(ip, m.external_port().get())))
                    .collect();
                if let Some(mapped) = Mapped::new(self.mapped.protocol, &granted) {
                    self.mapped = mapped;
                }
            }
            Gateway::Upnp { gateway, entries } => {
                for e in entries.iter() {
                    gateway
                        .add_port(e.protocol, e.external_port, e.local, e.lease, DESCRIPTION)
                        .await
                        .map_err(|e| MapError::UpnpAdd(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    async fn remove(self) {
        match self.at {
            Gateway::Pmp { mappings } => {
                for (_, mapping) in mappings {
                    if let Err((e, _)) = mapping.try_drop().await {
                        tracing::debug!("port mapping not removed: {e}");
                    }
                }
            }
            Gateway::Upnp { gateway, entries } => {
                for e in entries {
                    if let Err(e) = gateway.remove_port(e.protocol, e.external_port).await {
                        tracing::debug!("port mapping not removed: {e}");
                    }
                }
            }
        }
    }
}

/// Asks the default gateway by PCP/NAT-PMP and looks for a UPnP gateway at the same time;
/// PCP/NAT-PMP wins when both answer (one UDP exchange per renewal, no HTTP).
async fn map_ports(ports: Ports, local_ip: Option<Ipv4Addr>) -> Result<Held, MapError> {
    let gateway = default_gateway();
    let local_ip = local_ip.or_else(|| gateway.and_then(route_source));
    let pmp = async {
        match (gateway, local_ip) {
            (Some(gateway), Some(local_ip)) => map_with_pmp(gateway, local_ip, ports).await,
            _ => Err(MapError::NoGateway),
        }
    };
    let (pmp, upnp_gateway) = tokio::join!(pmp, search_upnp(local_ip));
    let pmp_error = match pmp {
        Ok(held) => return Ok(held),
        Err(e) => e,
    };
    let upnp_gateway = match upnp_gateway {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!("PCP/NAT-PMP: {pmp_error}");
            return Err(e);
        }
    };
    tracing::debug!("PCP/NAT-PMP: {pmp_error}; UPnP gateway at {}", upnp_gateway.addr);
    let local_ip = match local_ip.or_else(|| route_source(ipv4(upnp_gateway.addr.ip())?)) {
        Some(ip) => ip,
        None => return Err(MapError::NoGateway),
    };
    map_with_upnp(upnp_gateway, local_ip, ports).await
}

fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

async fn map_with_pmp(
    gateway: Ipv4Addr,
    local_ip: Ipv4Addr,
    ports: Ports,
) -> Result<Held, MapError> {
    let options = |port: u16| crab_nat::PortMappingOptions {
        external_port: NonZeroU16::new(port),
        lifetime_seconds: Some(LEASE.as_secs() as u32),
        timeout_config: Some(PMP_TIMEOUTS),
    };
    let mut mappings = Vec::new();
    for (role, port) in ports.wanted() {
        let Some(internal) = NonZeroU16::new(port) else { continue };
        let protocol = match role.is_udp() {
            true => crab_nat::InternetProtocol::Udp,
            false => crab_nat::InternetProtocol::Tcp,
        };
        let mapping = crab_nat::PortMapping::new(
            gateway.into(),
            local_ip.into(),
            protocol,
            internal,
            options(port),
        )
        .await;
        match mapping {
            Ok(m) => mappings.push((role, m)),
            // The UDP side is a bonus; without the TCP side nothing is mapped.
            Err(e) if !mappings.is_empty() => tracing::debug!("UDP port {port} not mapped: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    let Some((_, first)) = mappings.first() else { return Err(MapError::NoGateway) };
    let external = match first.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => {
            ipv4(external_ip).map(|ip| (MappingProtocol::Pcp, ip)).ok_or(MapError::NotIpv4)
        }
        crab_nat::PortMappingType::NatPmp => {
            crab_nat::natpmp::external_address(gateway.into(), Some(PMP_TIMEOUTS))
                .await
                .map(|ip| (MappingProtocol::NatPmp, ip))
                .map_err(MapError::from)
        }
    };
    let (protocol, external_ip) = match external {
        Ok(x) => x,
        Err(e) => {
            // Useless without the address to tell peers: give back what was granted.
            for (_, mapping) in mappings {
                let _ = mapping.try_drop().await;
            }
            return Err(e);
        }
    };
    let granted: Vec<_> = mappings
        .iter()
        .map(|(role, m)| (*role, SocketAddrV4::new(external_ip, m.external_port().get())))
        .collect();
    let Some(mapped) = Mapped::new(protocol, &granted) else { return Err(MapError::NoGateway) };
    Ok(Held { mapped, at: Gateway::Pmp { mappings } })
}

/// The external address a PCP mapping reports (NAT-PMP's comes from a request of its own).
fn pcp_external_ip(mapping: &crab_nat::PortMapping) -> Option<Ipv4Addr> {
    match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => ipv4(external_ip),
        crab_nat::PortMappingType::NatPmp => None,
    }
}

async fn search_upnp(
    local_ip: Option<Ipv4Addr>,
) -> Result<igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>, MapError> {
    let mut options = igd_next::SearchOptions::default();
    // From the interface the gateway is on, when known (else the OS picks).
    options.bind_addr = SocketAddr::from((local_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0));
    options.timeout = Some(UPNP_SEARCH);
    options.single_search_timeout = Some(UPNP_SEARCH);
    options.gateway_ip_version = igd_next::GatewayIpVersion::V4;
    Ok(igd_next::aio::tokio::search_gateway(options).await?)
}

async fn map_with_upnp(
    gateway: igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
    local_ip: Ipv4Addr,
    ports: Ports,
) -> Result<Held, MapError> {
    let external_ip = ipv4(gateway.get_external_ip().await?).ok_or(MapError::NotIpv4)?;
    let mut entries: Vec<UpnpEntry> = Vec::new();
    let mut granted = Vec::new();
    for (role, port) in ports.wanted() {
        let protocol = match role.is_udp() {
            true => igd_next::PortMappingProtocol::UDP,
            false => igd_next::PortMappingProtocol::TCP,
        };
        match add_upnp(&gateway, protocol, SocketAddr::from((local_ip, port))).await {
            Ok(entry) => {
                granted.push((role, SocketAddrV4::new(external_ip, entry.external_port)));
                entries.push(entry);
            }
            Err(e) if !entries.is_empty() => tracing::debug!("UDP port {port} not mapped: {e}"),
            Err(e) => return Err(e),
        }
    }
    let Some(mapped) = Mapped::new(MappingProtocol::Upnp, &granted) else {
        return Err(MapError::NoGateway);
    };
    Ok(Held { mapped, at: Gateway::Upnp { gateway, entries } })
}

/// The same external port as ours when the gateway allows it (what peers behind no NAT
/// would see), else whichever it picks.
async fn add_upnp(
    gateway: &igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>,
    protocol: igd_next::PortMappingProtocol,
    local: SocketAddr,
) -> Result<UpnpEntry, MapError> {
    use igd_next::AddPortError;
    let mut lease = LEASE.as_secs() as u32;
    for _ in 0..2 {
        match gateway.add_port(protocol, local.port(), local, lease, DESCRIPTION).await {
            Ok(()) => return Ok(UpnpEntry { protocol, external_port: local.port(), local, lease }),
            Err(AddPortError::OnlyPermanentLeasesSupported) if lease != 0 => lease = 0,
            Err(AddPortError::PortInUse) => {
                let external_port = gateway
                    .add_any_port(protocol, local, lease, DESCRIPTION)
                    .await
                    .map_err(|e| MapError::UpnpAdd(e.to_string()))?;
                return Ok(UpnpEntry { protocol, external_port, local, lease });
            }
            Err(e) => return Err(MapError::UpnpAdd(e.to_string())),
        }
    }
    Err(MapError::UpnpAdd("the gateway refused every lease".into()))
}

/// The IPv4 default gateway, from the kernel's routing table (Linux); `None` elsewhere, where
/// only UPnP's search finds the gateway.
fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_gateway(&table)
}

/// `/proc/net/route`: a header, then `Iface Destination Gateway Flags ...` per route, the
/// addresses in hex as the kernel holds them (network order read as a native integer).
fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let destination = u32::from_str_radix(fields.next()?, 16).ok()?;
        let gateway = u32::from_str_radix(fields.next()?, 16).ok()?;
        let flags = u32::from_str_radix(fields.next()?, 16).ok()?;
        let usable = flags & RTF_UP != 0 && flags & RTF_GATEWAY != 0;
        (destination == 0 && usable && gateway != 0).then(|| Ipv4Addr::from(u32::from_be(gateway)))
    })
}

/// The local address packets to `gateway` leave from (no packet is sent: a UDP `connect`
/// only picks the route).
fn route_source(gateway: Ipv4Addr) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((gateway, 5351)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_hear_of_the_port_the_router_opened() {
        let ports = Ports { tcp: 6881, udp: Some(6881), dht: None };
        let public = Ipv4Addr::new(203, 0, 113, 7);
        let mapped = |port| MappingState {
            searched: true,
            mapped: Some(Mapped {
                protocol: MappingProtocol::Pcp,
                tcp: SocketAddrV4::new(public, port),
                udp: None,
                dht: None,
            }),
        };
        assert_eq!(announced_port(ports, &MappingState::default()), 6881);
        assert_eq!(announced_port(ports, &mapped(6881)), 6881);
        // Ours was taken at the router: it forwards another.
        assert_eq!(announced_port(ports, &mapped(40123)), 40123);
        // Lost again: back to the listen port.
        let lost = MappingState { searched: true, mapped: None };
        assert_eq!(announced_port(ports, &lost), 6881);
    }

    #[test]
    fn the_dht_port_is_asked_for_once_and_only_when_it_is_its_own() {
        let both = Ports { tcp: 6881, udp: Some(6881), dht: Some(50000) };
        assert_eq!(both.wanted(), [(Role::Tcp, 6881), (Role::Udp, 6881), (Role::Dht, 50000)]);
        let shared = Ports { tcp: 6881, udp: Some(6881), dht: Some(6881) };
        assert_eq!(shared.wanted(), [(Role::Tcp, 6881), (Role::Udp, 6881)]);
        let at = |port| SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), port);
        // The UDP mapping may be refused while the DHT's is granted: each keeps its role.
        let granted = [(Role::Tcp, at(1)), (Role::Dht, at(3))];
        let mapped = Mapped::new(MappingProtocol::Upnp, &granted).unwrap();
        assert_eq!((mapped.tcp, mapped.udp, mapped.dht), (at(1), None, Some(at(3))));
        assert_eq!(Mapped::new(MappingProtocol::Upnp, &[(Role::Udp, at(2))]), None);
    }

    #[test]
    fn finds_the_default_gateway_in_the_routing_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        let expected = Ipv4Addr::from(u32::from_be(0x0101A8C0));
        assert_eq!(parse_default_gateway(table), Some(expected));
        if cfg!(target_endian = "little") {
            assert_eq!(expected, Ipv4Addr::new(192, 168, 1, 1));
        }
    }

    #[test]
    fn no_default_route_means_no_gateway() {
        let header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n";
        let link_only = format!("{header}eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n");
        assert_eq!(parse_default_gateway(&link_only), None);
        // A default route that is down, or garbage, is no gateway either.
        let down = format!("{header}eth0\t00000000\t0101A8C0\t0002\t0\t0\t0\t00000000\n");
        assert_eq!(parse_default_gateway(&down), None);
        assert_eq!(parse_default_gateway(&format!("{header}eth0 zz")), None);
        assert_eq!(parse_default_gateway(""), None);
    }
}
