//! Counters every listener bumps, and their rendering as JSON and as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::store::{Store, StoreCounts};

/// Monotonic counters (and the `*_open` gauges) shared by all listeners.
#[derive(Debug, Default)]
pub struct Counters {
    pub http_announces: AtomicU64,
    pub http_scrapes: AtomicU64,
    pub http_errors: AtomicU64,
    pub http_connections_accepted: AtomicU64,
    /// Connections closed at once because `max_http_connections` were open.
    pub http_connections_refused: AtomicU64,
    /// Gauge: open HTTP connections.
    pub http_connections_open: AtomicU64,
    pub udp_connects: AtomicU64,
    pub udp_announces: AtomicU64,
    pub udp_scrapes: AtomicU64,
    pub udp_errors: AtomicU64,
    pub ws_announces: AtomicU64,
    pub ws_scrapes: AtomicU64,
    pub ws_errors: AtomicU64,
    pub ws_offers_relayed: AtomicU64,
    pub ws_answers_relayed: AtomicU64,
    /// Relayed messages dropped because the recipient's outbox was full or gone.
    pub ws_relays_dropped: AtomicU64,
    pub ws_connections_accepted: AtomicU64,
    pub ws_connections_refused: AtomicU64,
    /// Gauge: open WebSocket connections.
    pub ws_connections_open: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// A point-in-time view, as served by `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub uptime_secs: u64,
    pub classic: StoreCounts,
    pub ws: StoreCounts,
    pub counters: std::collections::BTreeMap<&'static str, u64>,
}

impl StatsSnapshot {
    pub fn take(counters: &Counters, store: &Store, uptime_secs: u64) -> Self {
        let (classic, ws) = store.counts();
        let c = counters;
        let list: [(&'static str, &AtomicU64); 20] = [
            ("http_announces", &c.http_announces),
            ("http_scrapes", &c.http_scrapes),
            ("http_errors", &c.http_errors),
            ("http_connections_accepted", &c.http_connections_accepted),
            ("http_connections_refused", &c.http_connections_refused),
            ("http_connections_open", &c.http_connections_open),
            ("udp_connects", &c.udp_connects),
            ("udp_announces", &c.udp_announces),
            ("udp_scrapes", &c.udp_scrapes),
            ("udp_errors", &c.udp_errors),
            ("ws_announces", &c.ws_announces),
            ("ws_scrapes", &c.ws_scrapes),
            ("ws_errors", &c.ws_errors),
            ("ws_offers_relayed", &c.ws_offers_relayed),
            ("ws_answers_relayed", &c.ws_answers_relayed),
            ("ws_relays_dropped", &c.ws_relays_dropped),
            ("ws_connections_accepted", &c.ws_connections_accepted),
            ("ws_connections_refused", &c.ws_connections_refused),
            ("ws_connections_open", &c.ws_connections_open),
            ("rate_limited", &c.rate_limited),
        ];
        let counters = list.iter().map(|(k, v)| (*k, v.load(Relaxed))).collect();
        StatsSnapshot { uptime_secs, classic, ws, counters }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "# TYPE shoal_tracker_uptime_seconds gauge");
        let _ = writeln!(out, "shoal_tracker_uptime_seconds {}", self.uptime_secs);
        for (metric, what) in [("torrents", 0), ("seeders", 1), ("leechers", 2)] {
            let _ = writeln!(out, "# TYPE shoal_tracker_{metric} gauge");
            for (kind, c) in [("classic", &self.classic), ("ws", &self.ws)] {
                let v = [c.torrents, c.seeders, c.leechers][what];
                let _ = writeln!(out, "shoal_tracker_{metric}{{kind=\"{kind}\"}} {v}");
            }
        }
        for (name, value) in &self.counters {
            let kind = if name.ends_with("_connections_open") { "gauge" } else { "counter" };
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "# TYPE shoal_tracker_{name}{suffix} {kind}");
            let _ = writeln!(out, "shoal_tracker_{name}{suffix} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let c = Counters::default();
        Counters::bump(&c.udp_announces);
        let s = StatsSnapshot::take(&c, &Store::new(10, 10), 7);
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["counters"]["udp_announces"], 1);
        let prom = s.to_prometheus();
        assert!(prom.contains("shoal_tracker_udp_announces_total 1\n"));
        assert!(prom.contains("shoal_tracker_torrents{kind=\"ws\"} 0\n"));
        // Every sample line is `name value` or `name{labels} value`.
        for line in prom.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
