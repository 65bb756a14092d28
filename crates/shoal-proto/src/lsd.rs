//! Local service discovery (BEP 14): the `BT-SEARCH` datagram a client multicasts on its LAN
//! to say which torrents it has and the port it accepts peers on. Parsing is strict about
//! what matters (the request line, a port, 40-hex info hashes) and bounded in everything
//! else; the datagram comes from anyone on the network.

use thiserror::Error;

use crate::types::InfoHash;

/// The IPv4 multicast group and port of BEP 14.
pub const LSD_GROUP_V4: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 192, 152, 143), 6771);
/// A datagram larger than this is not an announce.
pub const MAX_ANNOUNCE_BYTES: usize = 1400;
/// Info hashes read from one datagram: as many as our own encoding of them (with the longest
/// cookie) keeps within `MAX_ANNOUNCE_BYTES`.
pub const MAX_INFO_HASHES: usize = 20;

/// One announce: who (the sender's address, with this port) has which torrents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsdAnnounce {
    pub port: u16,
    pub info_hashes: Vec<InfoHash>,
    /// The sender's cookie, to recognise our own announces coming back.
    pub cookie: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LsdError {
    #[error("{0} bytes: larger than an announce")]
    TooLarge(usize),
    #[error("not a BT-SEARCH request")]
    NotBtSearch,
    #[error("no valid Port header")]
    NoPort,
    #[error("no valid Infohash header")]
    NoInfoHash,
}

impl LsdAnnounce {
    pub fn parse(datagram: &[u8]) -> Result<LsdAnnounce, LsdError> {
        if datagram.len() > MAX_ANNOUNCE_BYTES {
            return Err(LsdError::TooLarge(datagram.len()));
        }
        let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotBtSearch)?;
        let mut lines = text.split("\r\n");
        if lines.next().map(str::trim) != Some("BT-SEARCH * HTTP/1.1") {
            return Err(LsdError::NotBtSearch);
        }
        let mut port = None;
        let mut info_hashes = Vec::new();
        let mut cookie = None;
        for line in lines.take_while(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "port" => port = value.parse::<u16>().ok().filter(|&p| p != 0),
                "infohash" => {
                    if let Some(hash) = InfoHash::from_hex(value) {
                        if info_hashes.len() < MAX_INFO_HASHES && !info_hashes.contains(&hash) {
                            info_hashes.push(hash);
                        }
                    }
                }
                "cookie" if value.len() <= 64 => cookie = Some(value.to_owned()),
                _ => {}
            }
        }
        let port = port.ok_or(LsdError::NoPort)?;
        if info_hashes.is_empty() {
            return Err(LsdError::NoInfoHash);
        }
        Ok(LsdAnnounce { port, info_hashes, cookie })
    }

    /// The datagram, as other clients expect it (one `Infohash` header per torrent).
    pub fn encode(&self) -> Vec<u8> {
        let mut text =
            format!("BT-SEARCH * HTTP/1.1\r\nHost: {LSD_GROUP_V4}\r\nPort: {}\r\n", self.port);
        for hash in &self.info_hashes {
            text.push_str(&format!("Infohash: {}\r\n", hash.to_hex()));
        }
        if let Some(cookie) = &self.cookie {
            text.push_str(&format!("cookie: {cookie}\r\n"));
        }
        text.push_str("\r\n\r\n");
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_what_libtorrent_sends() {
        let a = LsdAnnounce {
            port: 6881,
            info_hashes: vec![InfoHash([0xab; 20]), InfoHash([1; 20])],
            cookie: Some("c0ffee".into()),
        };
        assert_eq!(LsdAnnounce::parse(&a.encode()), Ok(a));
        // libtorrent's shape: headers in another case, a trailing blank line.
        let lt = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 7000\r\n\
Infohash: ABABABABABABABABABABABABABABABABABABABAB\r\ncookie: 5e2c3a\r\n\r\n\r\n";
        let got = LsdAnnounce::parse(lt).unwrap();
        assert_eq!(got.port, 7000);
        assert_eq!(got.info_hashes, [InfoHash([0xab; 20])]);
    }

    #[test]
    fn bad_announces_are_refused() {
        assert_eq!(LsdAnnounce::parse(b"GET / HTTP/1.1\r\n\r\n"), Err(LsdError::NotBtSearch));
        assert_eq!(LsdAnnounce::parse(&[0xff; 20]), Err(LsdError::NotBtSearch));
        let no_port = b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: abababababababababababababababababababab\r\n\r\n";
        assert_eq!(LsdAnnounce::parse(no_port), Err(LsdError::NoPort));
        let bad_hash = b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n";
        assert_eq!(LsdAnnounce::parse(bad_hash), Err(LsdError::NoInfoHash));
        assert_eq!(LsdAnnounce::parse(&[b'a'; 2000]), Err(LsdError::TooLarge(2000)));
        // Many hashes: bounded.
        let mut many = String::from("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n");
        for i in 0..26u8 {
            many.push_str(&format!("Infohash: {}\r\n", InfoHash([i; 20]).to_hex()));
        }
        let got = LsdAnnounce::parse(many.as_bytes()).unwrap();
        assert_eq!(got.info_hashes.len(), MAX_INFO_HASHES);
    }
}
