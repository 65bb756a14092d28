//! The port-mapping router proves itself without Shoal: a client on the host behind it finds
//! miniupnpd by SSDP and maps ports with UPnP IGD, NAT-PMP and PCP (a small Python client,
//! below), the mappings show in `NatHost::port_mappings`, a TCP connection from the "internet"
//! to the router's public address and a mapped port reaches the host (and does not before the
//! mapping), and deleting the mappings removes them.
//!
//! Runs in a network namespace of its own; skipped (`SKIP:`) without root, nftables or
//! miniupnpd-nftables (scripts/install-test-deps.sh installs both).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use serde_json::Value;
use shoal_testkit::nat::{NatHost, LAN_HOST};
use shoal_testkit::upnp::{self, PortMapping};
use shoal_testkit::*;

/// Bound on each client step (its own requests time out after 2-3 s; Python can take seconds
/// to start on a busy machine).
const STEP: Duration = Duration::from_secs(20);
/// How long a connection to a port nobody mapped gets before it counts as blocked.
const BLOCKED_WAIT: Duration = Duration::from_millis(1500);

/// `client.py <command> ...`: one request, one JSON line.
///
/// - `ssdp`: M-SEARCH for an IGD; prints its `location`.
/// - `upnp <location> add|del <proto> <port> [description]`: AddPortMapping (to the same
///   port on this host) or DeletePortMapping through the WANIPConnection service; also
///   GetExternalIPAddress.
/// - `natpmp <proto> <port> <lifetime>`: the public address, then a mapping (lifetime 0
///   deletes).
/// - `pcp <proto> <port> <lifetime>`: a PCP MAP with a fixed nonce (so that lifetime 0, with
///   the same nonce, deletes it).
/// - `listen <port>`: prints `listening`, sends a greeting to the first connection, exits.
const CLIENT: &str = r#"
import json, re, socket, struct, sys, urllib.parse, urllib.request
import xml.etree.ElementTree as ET

GATEWAY, ME = '192.168.1.1', '192.168.1.2'
PROTO = {'tcp': 6, 'udp': 17}
def out(**kw): print(json.dumps(kw), flush=True)
cmd = sys.argv[1]

if cmd == 'ssdp':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n'
             b'MX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n',
             ('239.255.255.250', 1900))
    data, peer = s.recvfrom(4096)
    location = re.search(rb'(?im)^location:\s*(\S+)', data).group(1).decode()
    out(location=location, responder=peer[0])

elif cmd == 'upnp':
    location, op, proto, port = sys.argv[2], sys.argv[3], sys.argv[4].upper(), sys.argv[5]
    root = ET.fromstring(urllib.request.urlopen(location, timeout=3).read())
    service = control = None
    for el in root.iter():
        if el.tag.endswith('}service'):
            kids = {c.tag.split('}')[1]: (c.text or '') for c in el}
            if 'WANIPConnection' in kids.get('serviceType', ''):
                service, control = kids['serviceType'], urllib.parse.urljoin(location, kids['controlURL'])
    def soap(action, args):
        body = ''.join(f'<{k}>{v}</{k}>' for k, v in args)
        envelope = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
                    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
                    f'<u:{action} xmlns:u="{service}">{body}</u:{action}></s:Body></s:Envelope>')
        req = urllib.request.Request(control, envelope.encode(), {
            'Content-Type': 'text/xml; charset="utf-8"', 'SOAPAction': f'"{service}#{action}"'})
        return urllib.request.urlopen(req, timeout=3).read().decode()
    external = re.search(r'<NewExternalIPAddress>([^<]*)<', soap('GetExternalIPAddress', [])).group(1)
    if op == 'add':
        soap('AddPortMapping', [('NewRemoteHost', ''), ('NewExternalPort', port),
             ('NewProtocol', proto), ('NewInternalPort', port), ('NewInternalClient', ME),
             ('NewEnabled', 1), ('NewPortMappingDescription', sys.argv[6]),
             ('NewLeaseDuration', 3600)])
    else:
        soap('DeletePortMapping', [('NewRemoteHost', ''), ('NewExternalPort', port),
             ('NewProtocol', proto)])
    out(service=service, external=external)

elif cmd == 'natpmp':
    proto, port, lifetime = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((GATEWAY, 5351))
    s.send(b'\0\0')
    _, op, result, _, address = struct.unpack('!BBHI4s', s.recv(64)[:12])
    assert (op, result) == (128, 0), (op, result)
    s.send(struct.pack('!BBHHHI', 0, 1 if proto == 'udp' else 2, 0, port, port, lifetime))
    _, op, result, _, internal, external, granted = struct.unpack('!BBHIHHI', s.recv(64)[:16])
    out(public=socket.inet_ntoa(address), result=result, internal=internal, external=external,
        lifetime=granted)

elif cmd == 'pcp':
    proto, port, lifetime = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((GATEWAY, 5351))
    mapped = lambda a: b'\0' * 10 + b'\xff\xff' + a
    nonce = b'shoal nonce!'
    s.send(struct.pack('!BBHI', 2, 1, 0, lifetime) + mapped(socket.inet_aton(ME)) + nonce
           + struct.pack('!B3xHH', PROTO[proto], port, port) + mapped(b'\0' * 4))
    r = s.recv(1100)
    version, op, _, result, granted, epoch = struct.unpack('!BBBBII', r[:12])
    external = struct.unpack('!H', r[42:44])[0]
    out(version=version, op=op, result=result, lifetime=granted, external=external,
        external_ip=socket.inet_ntoa(r[56:60]), nonce=r[24:36] == nonce)

elif cmd == 'listen':
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ME, int(sys.argv[2])))
    s.listen(1)
    s.settimeout(30)
    out(listening=int(sys.argv[2]))
    conn, peer = s.accept()
    conn.sendall(b'hello from the host\n')
    conn.close()
    out(accepted=peer[0])
"#;

/// Runs one client command on `host` and returns its JSON line.
fn client(host: &NatHost, args: &[&str]) -> Value {
    let mut cmd = host.command(PYTHON);
    cmd.args(["-c", CLIENT]).args(args);
    run_for_json(&format!("client {}", args.join(" ")), cmd, STEP)
        .unwrap_or_else(|e| panic!("{e}\n--- miniupnpd ---\n{}", miniupnpd_log(host)))
}

fn miniupnpd_log(host: &NatHost) -> String {
    host.port_mapper().map(|m| m.log()).unwrap_or_default()
}

fn find<'a>(mappings: &'a [PortMapping], protocol: &str, port: u16) -> Option<&'a PortMapping> {
    mappings.iter().find(|m| m.protocol == protocol && m.external_port == port)
}

/// Connects from this (the "internet") namespace and reads what the host says.
fn greeting(to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_read_timeout(Some(STEP))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

#[test]
fn upnp_natpmp_and_pcp_map_ports_through_miniupnpd() {
    let test = "upnp_natpmp_and_pcp_map_ports_through_miniupnpd";
    if skip_interop() {
        return;
    }
    if let Some(why) =
        upnp::unavailable().or_else(|| require_tool(PYTHON).err().map(|e| e.to_string()))
    {
        return println!("SKIP: {test}: {why}");
    }
    match run_test_in_netns(test, Duration::from_secs(180)) {
        Ok(Netns::Inside) => {}
        Ok(Netns::Passed) => return,
        Ok(Netns::Skipped(why)) => return println!("SKIP: {test}: {why}"),
        Err(e) => panic!("{e}"),
    }

    let host =
        NatHost::with_port_mapping(1, upnp::Protocols::All).expect("a router with miniupnpd");
    let public = host.public_addr();
    assert!(host.port_mappings().unwrap().is_empty());

    // SSDP from the host finds the router's IGD.
    let found = client(&host, &["ssdp"]);
    let location = found["location"].as_str().expect("a location").to_owned();
    assert!(location.starts_with("http://192.168.1.1:"), "{found}");

    // The host listens; from outside, its port is closed until mapped.
    let (mut listener, _) = spawn_and_wait_for_json_line(
        "listener",
        {
            let mut cmd = host.command(PYTHON);
            cmd.args(["-c", CLIENT, "listen", "7000"]);
            cmd
        },
        |v| v.get("listening").is_some(),
        STEP,
    )
    .unwrap();
    let to = SocketAddr::V4(SocketAddrV4::new(public, 7000));
    let closed = greeting(to, BLOCKED_WAIT).expect_err("reached the host with no mapping");
    assert_eq!(closed.kind(), ErrorKind::TimedOut, "{closed}");

    let upnp = client(&host, &["upnp", &location, "add", "tcp", "7000", "shoal smoke: upnp"]);
    assert_eq!(upnp["external"].as_str(), Some(public.to_string().as_str()), "{upnp}");
    let natpmp = client(&host, &["natpmp", "tcp", "7001", "3600"]);
    assert_eq!(natpmp["public"].as_str(), Some(public.to_string().as_str()), "{natpmp}");
    assert_eq!((natpmp["result"].as_u64(), natpmp["external"].as_u64()), (Some(0), Some(7001)));
    let pcp = client(&host, &["pcp", "udp", "7002", "600"]);
    assert_eq!((pcp["version"].as_u64(), pcp["result"].as_u64()), (Some(2), Some(0)), "{pcp}");
    assert_eq!(pcp["external_ip"].as_str(), Some(public.to_string().as_str()), "{pcp}");

    let mappings = host.port_mappings().unwrap();
    let on_host = |port| SocketAddrV4::new(LAN_HOST, port);
    let by_upnp = find(&mappings, "TCP", 7000).unwrap_or_else(|| panic!("{mappings:?}"));
    assert_eq!(by_upnp.internal, on_host(7000));
    assert_eq!(by_upnp.description.as_deref(), Some("shoal smoke: upnp"));
    assert!(by_upnp.expires.is_some(), "{by_upnp:?}");
    assert_eq!(find(&mappings, "TCP", 7001).map(|m| m.internal), Some(on_host(7001)));
    assert_eq!(find(&mappings, "UDP", 7002).map(|m| m.internal), Some(on_host(7002)));
    assert_eq!(mappings.len(), 3, "{mappings:?}");

    // The mapping lets the internet in.
    let text = greeting(to, STEP).unwrap_or_else(|e| {
        panic!("{to} after mapping: {e}\n{}\n{}", host.router_state(), miniupnpd_log(&host))
    });
    assert_eq!(text, "hello from the host\n");
    listener.wait_success(STEP).unwrap();
    assert_eq!(listener.events().last().unwrap()["accepted"].as_str(), Some("198.18.1.1"));

    // Deleting them (UPnP; NAT-PMP and PCP with lifetime 0) empties the router.
    client(&host, &["upnp", &location, "del", "tcp", "7000"]);
    let natpmp = client(&host, &["natpmp", "tcp", "7001", "0"]);
    assert_eq!(natpmp["result"].as_u64(), Some(0), "{natpmp}");
    let pcp = client(&host, &["pcp", "udp", "7002", "0"]);
    assert_eq!(pcp["result"].as_u64(), Some(0), "{pcp}");
    let port_mapper = host.port_mapper().unwrap();
    port_mapper.wait_port_mappings("no mappings", STEP, |m| m.is_empty()).unwrap();
    // Dropped by the router again (a mapping left behind would get a reset from the host).
    let gone = greeting(to, BLOCKED_WAIT).expect_err("reached the host after the mapping went");
    assert_eq!(gone.kind(), ErrorKind::TimedOut, "{gone}");
}
