//! A bare Mainline DHT node as the session runs it (`shoal::dht`: the vendored `mainline`, our
//! per-source budget and bounded store), answering queries from the start and joining nobody:
//! what `benches/dht_flood.py` floods beside libtorrent's node.
//!
//!     cargo run --release -p shoal --example dht_node -- 127.0.0.30:0
//!
//! Prints `{"event":"ready","addr":"IP:PORT"}` once listening, then runs until stdin closes.

use std::net::SocketAddrV4;

use shoal::dht::{Dht, DhtConfig};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind: SocketAddrV4 = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => return Err("usage: dht_node IP:PORT".into()),
    };
    let config = DhtConfig { bootstrap: Some(vec![]), bind, state_file: None, server_mode: true };
    let dht = Dht::start(config).await?;
    println!("{{\"event\":\"ready\",\"addr\":\"{}\"}}", dht.local_addr());
    // Until whoever started us closes our stdin.
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    Ok(())
}
