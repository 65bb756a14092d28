//! Helpers shared by the engine's integration tests.

use shoal::SessionConfig;

/// Deterministic bytes (xorshift), so a mismatch is reproducible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A session listening on loopback only.
#[allow(dead_code)] // not every test binary uses every helper
pub fn local_config() -> SessionConfig {
    SessionConfig { listen: Some("127.0.0.1:0".parse().unwrap()), ..SessionConfig::default() }
}
