//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::time::Duration;

use shoal_sim::{NodeId, Sim, TestTorrent};

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn torrent(seed: u64, len: u64, piece_length: u32) -> TestTorrent {
    TestTorrent::random(seed, len, piece_length).expect("test torrent")
}

/// Runs until `node` is complete, panicking with a summary if it is not within `limit`.
pub fn complete(sim: &mut Sim, node: NodeId, limit: Duration) -> Duration {
    match sim.run_until(|s| s.node(node).is_complete(), limit) {
        Ok(at) => at.since_epoch(),
        Err(e) => panic!("node {node} did not complete: {e}\n{}", summary(sim)),
    }
}

/// Asserts `node` holds exactly the torrent's content.
pub fn assert_content(sim: &Sim, node: NodeId) {
    let data = sim.node(node).data().unwrap_or_else(|| panic!("node {node} is missing pieces"));
    assert!(data == sim.torrent().content[..], "node {node} holds different bytes");
}

/// One line per node, for failure messages.
pub fn summary(sim: &Sim) -> String {
    let now = sim.now();
    let mut out = format!("t={:?} {:?}\n", now.since_epoch(), sim.stats());
    for node in sim.nodes() {
        let st = node.stats(now);
        out += &format!(
            "  node {} {:?}: {}/{} pieces, peers {}, up {} down {} wasted {}, banned {}, \
             disconnects {:?}, driver closes {:?}, refusals {:?}\n",
            node.id(),
            node.state(),
            st.pieces_have,
            st.pieces_total,
            st.peers,
            st.uploaded,
            st.downloaded,
            st.wasted,
            st.banned,
            node.log().disconnects.iter().map(|d| (d.remote, &d.reason)).collect::<Vec<_>>(),
            node.log().driver_closes.iter().map(|d| (d.remote, &d.reason)).collect::<Vec<_>>(),
            node.log().refusals.iter().map(|r| (r.remote, &r.refusal)).collect::<Vec<_>>(),
        );
    }
    out
}
