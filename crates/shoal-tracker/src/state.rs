//! What every listener shares: config, swarms, counters, limits.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use shoal_proto::InfoHash;

use crate::config::Config;
use crate::conn_id::ConnectionIds;
use crate::limiter::IpLimiter;
use crate::stats::{Counters, StatsSnapshot};
use crate::store::{Secs, Store};

pub struct State {
    pub config: Config,
    pub store: Store,
    pub counters: Counters,
    pub limiter: IpLimiter,
    pub conn_ids: ConnectionIds,
    allow: Option<HashSet<InfoHash>>,
    started: Instant,
}

impl State {
    pub fn new(config: Config) -> State {
        let allow = config
            .allow_list
            .as_ref()
            .map(|list| list.iter().filter_map(|h| InfoHash::from_hex(h)).collect());
        State {
            store: Store::new(config.max_peers_per_swarm as usize, config.max_swarms as usize),
            counters: Counters::default(),
            limiter: IpLimiter::new(config.per_ip_requests_per_sec, config.per_ip_burst),
            conn_ids: ConnectionIds::default(),
            allow,
            started: Instant::now(),
            config,
        }
    }

    /// Seconds since start, the store's clock.
    pub fn now(&self) -> Secs {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    pub fn allowed(&self, hash: &InfoHash) -> bool {
        self.allow.as_ref().is_none_or(|set| set.contains(hash))
    }

    /// Counts a request against its IP's budget.
    pub fn rate_ok(&self, ip: IpAddr) -> bool {
        let ok = self.limiter.allow(ip);
        if !ok {
            Counters::bump(&self.counters.rate_limited);
        }
        ok
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot::take(&self.counters, &self.store, self.started.elapsed().as_secs())
    }

    /// The client's address: the socket's, or the last `X-Forwarded-For` entry when the
    /// operator said a proxy of theirs appends it. IPv4-mapped IPv6 reads as IPv4.
    pub fn client_ip(&self, socket: SocketAddr, forwarded_for: Option<&[u8]>) -> IpAddr {
        let mut ip = socket.ip();
        if self.config.trust_x_forwarded_for {
            if let Some(last) = forwarded_for
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
            {
                ip = last;
            }
        }
        ip.to_canonical()
    }

    /// The peer expiry deadline at `now`.
    pub fn expiry_deadline(&self) -> Secs {
        self.now().saturating_sub(self.config.peer_timeout_secs)
    }
}
