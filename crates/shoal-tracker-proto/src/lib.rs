//! Tracker wire types shared by Shoal's tracker clients and its tracker server: HTTP announce
//! and scrape (BEP 3, 7, 23, 48), UDP (BEP 15), and announce-list tiers (BEP 12).

pub mod http;
pub mod tiers;
pub mod udp;
