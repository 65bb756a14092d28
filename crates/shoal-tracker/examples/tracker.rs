//! A bare tracker process for benchmarks and debugging until `shoal tracker` is at hand:
//! `cargo run --release -p shoal-tracker --example tracker -- [--http ADDR] [--udp ADDR]
//! [--ws ADDR] [--config FILE] [--tls-cert FILE --tls-key FILE] [--threads N]`.
//! Prints one `{"event":"ready",...}` line, then serves until SIGINT/SIGTERM or stdin closes.

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let mut config = match arg("--config") {
        Some(path) => shoal_tracker::Config::from_file(path.as_ref()).unwrap_or_else(|e| die(&e)),
        None => shoal_tracker::Config::default(),
    };
    let addr =
        |name: &str| arg(name).map(|a| a.parse().unwrap_or_else(|e| die(&format!("{name}: {e}"))));
    config.http = addr("--http").or(config.http);
    config.udp = addr("--udp").or(config.udp);
    config.ws = addr("--ws").or(config.ws);
    if let (Some(cert), Some(key)) = (arg("--tls-cert"), arg("--tls-key")) {
        config.tls_cert = Some(cert.into());
        config.tls_key = Some(key.into());
    }
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(0);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    let runtime = builder.enable_all().build().unwrap_or_else(|e| die(&e));
    runtime.block_on(async move {
        let tracker = shoal_tracker::start(config).await.unwrap_or_else(|e| die(&e));
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
        println!(
            "{}",
            serde_json::json!({"event": "ready", "http": show(tracker.http_addr),
                "udp": show(tracker.udp_addr), "ws": show(tracker.ws_addr)})
        );
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .unwrap_or_else(|e| die(&e));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = stdin_closed => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), tracker.shutdown()).await;
    });
    // Dropping the runtime would wait for the stdin reader, which blocks in `read_line` for
    // as long as stdin stays open (a benchmark holds it open): leave it behind instead.
    runtime.shutdown_background();
}

fn die(e: &dyn std::fmt::Display) -> ! {
    eprintln!("tracker: {e}");
    std::process::exit(1)
}
