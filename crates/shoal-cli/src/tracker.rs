//! `shoal tracker`: run the tracker server (HTTP, UDP and WebSocket listeners in one process).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::output::{CliError, Context};

#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// HTTP announce/scrape listener, e.g. 0.0.0.0:8000 (also serves /stats and /metrics).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// UDP (BEP 15) listener, e.g. 0.0.0.0:8000.
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// WebSocket (WebTorrent) listener, e.g. 0.0.0.0:8001.
    #[arg(long, value_name = "ADDR")]
    pub ws: Option<SocketAddr>,
    /// A TOML config file (see shoal_tracker::config); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain: with --tls-key, the WebSocket and HTTP listeners speak TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Save classic swarms to FILE on shutdown (and periodically) and restore them on start.
    #[arg(long, value_name = "FILE")]
    pub persist: Option<PathBuf>,
    /// Take the client address from X-Forwarded-For (only behind your own reverse proxy).
    #[arg(long)]
    pub trust_x_forwarded_for: bool,
    /// Print the bound addresses as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: TrackerArgs) -> Result<(), CliError> {
    let mut config = match &args.config {
        Some(path) => shoal_tracker::Config::from_file(path).context("cannot load the config")?,
        None => shoal_tracker::Config::default(),
    };
    config.http = args.http.or(config.http);
    config.udp = args.udp.or(config.udp);
    config.ws = args.ws.or(config.ws);
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert.clone();
        config.tls_key = args.tls_key.clone();
    }
    if args.persist.is_some() {
        config.persist_file = args.persist.clone();
    }
    config.trust_x_forwarded_for |= args.trust_x_forwarded_for;
    if config.http.is_none() && config.udp.is_none() && config.ws.is_none() {
        return Err(CliError::Usage(
            "give at least one of --http, --udp, --ws (or a --config)".into(),
        ));
    }
    let tls = config.tls_cert.is_some();
    let tracker = shoal_tracker::start(config).await.context("cannot start the tracker")?;
    let (http_scheme, ws_scheme) = if tls { ("https", "wss") } else { ("http", "ws") };
    let http = tracker.http_addr.map(|a| format!("{http_scheme}://{a}/announce"));
    let udp = tracker.udp_addr.map(|a| format!("udp://{a}"));
    let ws = tracker.ws_addr.map(|a| format!("{ws_scheme}://{a}"));
    if args.json {
        let line = serde_json::json!({"event": "ready", "http": http, "udp": udp, "ws": ws});
        println!("{line}");
    } else {
        for url in [&http, &udp, &ws].into_iter().flatten() {
            println!("tracker listening on {url}");
        }
    }
    crate::signals::wait_for_signal().await;
    eprintln!("shoal tracker: shutting down");
    tracker.shutdown().await.context("shutdown failed")
}
