//! `udp://host:port/path?query` tracker URLs.

/// A UDP tracker's address and the BEP 41 URL data to send with each announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpTrackerUrl {
    /// A host name or an address literal (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
    /// The path and query (`/announce?passkey=x`), empty when the URL has neither.
    pub url_data: Vec<u8>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UdpUrlError {
    #[error("not a udp:// URL")]
    NotUdp,
    #[error("UDP tracker URL has no host")]
    NoHost,
    #[error("UDP tracker URL needs a port in 1-65535")]
    BadPort,
    #[error("UDP tracker URL has an unterminated IPv6 address")]
    BadIpv6,
}

/// Parses a UDP tracker URL. The port is mandatory (there is no default for UDP trackers);
/// the scheme is matched without regard to case; user info and fragments are dropped.
pub fn parse_udp_url(url: &str) -> Result<UdpTrackerUrl, UdpUrlError> {
    let rest = url
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("udp://"))
        .and_then(|_| url.get(6..))
        .ok_or(UdpUrlError::NotUdp)?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);

    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UdpUrlError::BadIpv6)?;
        (host, after.strip_prefix(':').ok_or(UdpUrlError::BadPort)?)
    } else {
        host_port.rsplit_once(':').ok_or(UdpUrlError::BadPort)?
    };
    if host.is_empty() {
        return Err(UdpUrlError::NoHost);
    }
    let port = port.parse::<u16>().ok().filter(|&p| p != 0).ok_or(UdpUrlError::BadPort)?;
    Ok(UdpTrackerUrl { host: host.to_owned(), port, url_data: path_and_query.as_bytes().to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(host: &str, port: u16, data: &str) -> Result<UdpTrackerUrl, UdpUrlError> {
        Ok(UdpTrackerUrl { host: host.into(), port, url_data: data.as_bytes().to_vec() })
    }

    #[test]
    fn parses_hosts_ports_and_url_data() {
        assert_eq!(
            parse_udp_url("udp://tracker.example:1337"),
            parsed("tracker.example", 1337, "")
        );
        assert_eq!(
            parse_udp_url("UDP://tracker.example:80/announce?passkey=a#frag"),
            parsed("tracker.example", 80, "/announce?passkey=a")
        );
        assert_eq!(parse_udp_url("udp://[::1]:6969/announce"), parsed("::1", 6969, "/announce"));
        assert_eq!(parse_udp_url("udp://127.0.0.1:6969?x=1"), parsed("127.0.0.1", 6969, "?x=1"));
        assert_eq!(parse_udp_url("udp://u:p@h:1/"), parsed("h", 1, "/"));
    }

    #[test]
    fn rejects_bad_urls() {
        assert_eq!(parse_udp_url("http://h:1/announce"), Err(UdpUrlError::NotUdp));
        assert_eq!(parse_udp_url("udp:/"), Err(UdpUrlError::NotUdp));
        assert_eq!(parse_udp_url("udp://h/announce"), Err(UdpUrlError::BadPort));
        assert_eq!(parse_udp_url("udp://h:0"), Err(UdpUrlError::BadPort));
        assert_eq!(parse_udp_url("udp://h:70000"), Err(UdpUrlError::BadPort));
        assert_eq!(parse_udp_url("udp://:80"), Err(UdpUrlError::NoHost));
        assert_eq!(parse_udp_url("udp://[::1:80"), Err(UdpUrlError::BadIpv6));
        assert_eq!(parse_udp_url("udp://[::1]80"), Err(UdpUrlError::BadPort));
        assert_eq!(parse_udp_url("udp://é:1"), parsed("é", 1, ""));
    }
}
