//! `shoal stream`: watch a torrent's file while it downloads, from any player, over HTTP.
//!
//! The torrent's files are served at `/files/INDEX/NAME` with byte ranges; what players read
//! is downloaded first (see `shoal::stream`). Pieces live in memory within `--max-memory`
//! (the default), or in files under `-o DIR`. Whatever is held is seeded to other peers.

pub mod http;
mod mime;
mod page;
pub mod range;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shoal::{AddTorrent, Phase, StorageTarget, TorrentHandle};
use shoal_proto::metainfo::Info;

use crate::output::human_size;
use crate::transfer;
use crate::{CliError, StreamArgs};
use http::{AppState, ServedFile};

/// Memory for pieces when neither `-o` nor `--max-memory` is given.
pub const DEFAULT_MAX_MEMORY: u64 = 512 * 1024 * 1024;
/// A bounded store must hold at least this many pieces to stream at all.
const MIN_PIECES_IN_MEMORY: u64 = 8;
/// How long a response waits for data before it is cut off (the player sees an error and
/// usually retries, which is better than a connection hanging forever).
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(args: StreamArgs) -> Result<(), CliError> {
    let source = transfer::resolve_source(&args.source).await?;
    let peers = transfer::resolve_peers(&args.peers).await?;
    // Bind first: a taken port should fail before anything is downloaded.
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| CliError::with_source(format!("cannot listen on {}", args.http), e))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| CliError::with_source("cannot read the HTTP address", e))?;
    let session = transfer::start_session(transfer::SessionOptions {
        listen: args.listen,
        webrtc: args.webrtc.config(),
        discovery: args.discovery.discovery(),
        purpose: transfer::SessionPurpose::Streaming,
        rates: args.rates,
    })
    .await?;
    let outcome = stream(&args, &session, listener, http_addr, source, peers).await;
    // Whatever ended the stream: the router's mappings go, the DHT's nodes are kept.
    session.shutdown().await;
    outcome
}

/// Adds the torrent and serves it until the player or the user stops; the torrent is shut
/// down on every path out.
async fn stream(
    args: &StreamArgs,
    session: &shoal::Session,
    listener: tokio::net::TcpListener,
    http_addr: std::net::SocketAddr,
    source: shoal::TorrentSource,
    peers: Vec<std::net::SocketAddr>,
) -> Result<(), CliError> {
    let target = match &args.output {
        Some(dir) => StorageTarget::Dir(dir.clone()),
        None => StorageTarget::BoundedMemory {
            max_bytes: args.max_memory.unwrap_or(DEFAULT_MAX_MEMORY),
        },
    };
    let handle = session
        .add_torrent(AddTorrent {
            source,
            target: target.clone(),
            only_files: None,
            file_priorities: None,
            peers,
            extra_trackers: args.trackers.clone(),
            web_seeds: args.web_seeds.clone(),
        })
        .map_err(|e| CliError::with_source("cannot add the torrent", e))?;

    if !args.json {
        eprintln!("waiting for the torrent's metadata…");
    }
    let info = match wait_for_info(&handle).await {
        Ok(info) => info,
        Err(e) => {
            handle.shutdown().await;
            return Err(e);
        }
    };
    if let StorageTarget::BoundedMemory { max_bytes } = target {
        let least = MIN_PIECES_IN_MEMORY * u64::from(info.piece_length);
        if max_bytes < least {
            handle.shutdown().await;
            return Err(CliError::Usage(format!(
                "--max-memory {} is too small for this torrent's {} pieces; give at least {}",
                human_size(max_bytes),
                human_size(u64::from(info.piece_length)),
                human_size(least)
            )));
        }
    }
    let files = ServedFile::list(&info);
    let selected = match select_file(&files, args.file.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            handle.shutdown().await;
            return Err(e);
        }
    };

    let state = AppState {
        handle: handle.clone(),
        files: Arc::new(files.clone()),
        read_timeout: Some(READ_TIMEOUT),
        network: page::Network::of(session),
    };
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async {
                let _ = server_stopped.await;
            })
            .await
    });

    let base = format!("http://{http_addr}");
    let url = format!("{base}{}", selected.url_path);
    announce(args, &handle, &base, &url, &files, selected);
    transfer::report_port_mapping_later(session, args.json);

    let outcome = match &args.player {
        Some(program) => match launch_player(program, &url) {
            Ok(mut player) => run_until_stopped(&handle, Some(&mut player), args.json).await,
            Err(e) => Err(e),
        },
        None => run_until_stopped(&handle, None, args.json).await,
    };
    let _ = stop_server.send(());
    handle.shutdown().await;
    // Open responses keep the server's graceful shutdown waiting; do not hang on them.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    outcome
}

/// Waits until the info dictionary is known (at once for a .torrent, from peers for a
/// magnet).
async fn wait_for_info(handle: &TorrentHandle) -> Result<Arc<Info>, CliError> {
    let mut rx = handle.watch();
    let mut interrupted = std::pin::pin!(crate::signals::wait_for_signal());
    loop {
        let status = rx.borrow_and_update().clone();
        if let Some(info) = status.info {
            return Ok(info);
        }
        if let Phase::Failed(e) = &status.phase {
            return Err(CliError::msg(e.clone()));
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Err(CliError::msg("the torrent task ended unexpectedly"));
                }
            }
            _ = &mut interrupted => return Err(CliError::msg("interrupted")),
        }
    }
}

/// `--file`: an index, or a path or file name in the torrent; otherwise the default pick.
fn select_file<'a>(
    files: &'a [ServedFile],
    wanted: Option<&str>,
) -> Result<&'a ServedFile, CliError> {
    let Some(wanted) = wanted else {
        let index = mime::default_file(files.iter().map(|f| (f.path.as_str(), f.length)))
            .ok_or_else(|| CliError::msg("the torrent has no files"))?;
        return files.get(index).ok_or_else(|| CliError::msg("the torrent has no files"));
    };
    let by_index = wanted.parse::<usize>().ok().and_then(|i| files.iter().find(|f| f.index == i));
    let by_name = || {
        files
            .iter()
            .find(|f| f.path == wanted)
            .or_else(|| files.iter().find(|f| f.name() == wanted))
    };
    by_index.or_else(by_name).ok_or_else(|| {
        let names: Vec<String> = files.iter().map(|f| format!("{} {}", f.index, f.path)).collect();
        CliError::Usage(format!(
            "--file {wanted}: no such file; the torrent has:\n  {}",
            names.join("\n  ")
        ))
    })
}

fn announce(
    args: &StreamArgs,
    handle: &TorrentHandle,
    base: &str,
    url: &str,
    files: &[ServedFile],
    selected: &ServedFile,
) {
    if args.json {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut v = page::file_json(f);
                v["url"] = json!(format!("{base}{}", f.url_path));
                v
            })
            .collect();
        println!(
            "{}",
            json!({
                "event": "listening",
                "http": base,
                "status": format!("{base}/"),
                "playlist": format!("{base}/playlist.m3u"),
                "api": format!("{base}/api/status"),
                "info_hash": handle.info_hash().to_hex(),
                "name": handle.name(),
                "selected": selected.index,
                "url": url,
                "files": files,
            })
        );
        return;
    }
    println!("{url}");
    eprintln!("streaming {} ({})", selected.path, human_size(selected.length));
    eprintln!("status page: {base}/   playlist: {base}/playlist.m3u");
    if files.len() > 1 {
        for f in files {
            eprintln!("  {:>3}  {:>10}  {base}{}", f.index, human_size(f.length), f.url_path);
        }
    }
    eprintln!("press Ctrl-C to stop");
}

fn launch_player(program: &str, url: &str) -> Result<tokio::process::Child, CliError> {
    let mut command = tokio::process::Command::new(program);
    command.arg(url).stdin(Stdio::null()).kill_on_drop(true);
    command
        .spawn()
        .map_err(|e| CliError::with_source(format!("cannot start the player {program}"), e))
}

/// Runs until Ctrl-C, SIGTERM, the player exiting, or the torrent failing; prints progress.
async fn run_until_stopped(
    handle: &TorrentHandle,
    mut player: Option<&mut tokio::process::Child>,
    json: bool,
) -> Result<(), CliError> {
    let mut interrupted = std::pin::pin!(crate::signals::wait_for_signal());
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = async {
                match player.as_mut() {
                    Some(p) => { let _ = p.wait().await; }
                    None => std::future::pending().await,
                }
            } => return Ok(()),
            _ = ticker.tick() => {
                let status = handle.status();
                if let Phase::Failed(e) = &status.phase {
                    return Err(CliError::msg(e.clone()));
                }
                let s = &status.stats;
                if json {
                    println!("{}", json!({
                        "event": "progress",
                        "phase": crate::output::phase_name(&status.phase),
                        "pieces_have": s.pieces_have,
                        "pieces_total": s.pieces_total,
                        "downloaded": s.downloaded,
                        "uploaded": s.uploaded,
                        "download_rate": s.download_rate,
                        "upload_rate": s.upload_rate,
                        "peers": s.peers,
                        "peers_by_source": s.peers_by_source,
                        "webrtc_peers": status.webrtc_peers,
                        "peers_by_transport": status.peers_by_transport,
                        "encrypted_peers": status.encrypted_peers,
                        "web_seeds": s.web_seeds,
                        "web_seed_status": transfer::web_seeds_json(&status),
                        "readers": status.readers,
                        "memory_resident": status.memory.map(|m| m.resident),
                    }));
                }
            }
        }
    }
}
