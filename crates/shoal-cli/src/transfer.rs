//! Running a torrent from the command line: `download` and `seed` share this. It resolves what
//! the user gave (a .torrent path or URL, a magnet, or a folder to share), starts a session,
//! shows progress, and decides when the command is done.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use shoal::dht::Dht;
use shoal::{
    AddTorrent, Phase, Session, SessionConfig, StorageTarget, TorrentHandle, TorrentSource,
    TorrentStatus, WebSeedState,
};
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::Metainfo;

use crate::CliError;

/// Largest .torrent accepted from a file or URL: what the parser accepts at all.
const MAX_TORRENT_FILE: u64 = shoal_proto::metainfo::MAX_METAINFO_BYTES as u64;

/// How peers are found and find us besides trackers, and how they are spoken to: the DHT,
/// local service discovery (BEP 14), the router's port mapping, protocol encryption (from
/// `--no-dht`, `--no-lsd`, `--no-port-mapping`, `--encryption`...).
#[derive(Clone)]
pub struct Discovery {
    pub dht: Option<shoal::dht::DhtConfig>,
    pub lsd: bool,
    pub port_mapping: bool,
    pub encryption: shoal::EncryptionPolicy,
    pub utp: bool,
    /// Where resume records are kept; `None` for none.
    pub resume_dir: Option<PathBuf>,
}

/// What the user asked to run.
pub struct TransferOptions {
    pub output: PathBuf,
    pub peers: Vec<String>,
    pub listen: Option<SocketAddr>,
    pub webrtc: Option<shoal::webrtc::WebRtcConfig>,
    pub discovery: Discovery,
    pub trackers: Vec<String>,
    /// Web seeds besides the torrent's or magnet's own.
    pub web_seeds: Vec<String>,
    pub only_files: Option<Vec<usize>>,
    pub json: bool,
    /// Keep running after completion.
    pub keep_seeding: bool,
    /// `seed`: the data must already be complete.
    pub require_complete: bool,
    /// Printed at start with our listen address added (`x.pe`), so a peer can join at once.
    pub print_magnet: Option<Magnet>,
    /// Seed as an origin whose audience passes pieces on (`TorrentConfig::spread`).
    pub spread: bool,
    /// The upload and download caps.
    pub rates: crate::RateArgs,
}

/// Reads a .torrent from a path or an http(s) URL, or parses a magnet.
pub async fn resolve_source(input: &str) -> Result<TorrentSource, CliError> {
    if input.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("magnet:")) {
        let magnet =
            Magnet::parse(input).map_err(|e| CliError::msg(format!("invalid magnet: {e}")))?;
        return Ok(TorrentSource::Magnet(magnet));
    }
    let bytes = if input.starts_with("http://") || input.starts_with("https://") {
        shoal::fetch::fetch_url(input, MAX_TORRENT_FILE)
            .await
            .map_err(|e| CliError::msg(format!("cannot fetch {input}: {e}")))?
    } else {
        read_bounded(Path::new(input))?
    };
    // As the source, so that the parser's own cause (which byte, which field) is printed too.
    let meta =
        Metainfo::from_bytes(&bytes).map_err(|e| CliError::with_source(input.to_owned(), e))?;
    Ok(TorrentSource::Metainfo(Box::new(meta)))
}

pub fn read_bounded(path: &Path) -> Result<Vec<u8>, CliError> {
    let len = std::fs::metadata(path)
        .map_err(|e| CliError::msg(format!("cannot read {}: {e}", path.display())))?
        .len();
    if len > MAX_TORRENT_FILE {
        return Err(CliError::msg(format!(
            "{} is {len} bytes, larger than any torrent file ({MAX_TORRENT_FILE} bytes at most)",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| CliError::msg(format!("cannot read {}: {e}", path.display())))
}

/// Resolves `HOST:PORT` strings (names allowed) to socket addresses.
pub async fn resolve_peers(peers: &[String]) -> Result<Vec<SocketAddr>, CliError> {
    let mut out = Vec::new();
    for peer in peers {
        let addrs = tokio::net::lookup_host(peer.as_str())
            .await
            .map_err(|e| CliError::msg(format!("bad --peer {peer}: {e}")))?;
        out.extend(addrs);
    }
    Ok(out)
}

/// What a session's torrents are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPurpose {
    /// Downloading or seeding whole torrents: rarest first.
    Transfer,
    /// A player reads the torrents: each file's first and last pieces come before rarest-first.
    Streaming,
    /// Seeding to an audience that serves itself (`seed`, `serve`): each piece is sent about
    /// once and the peers pass it on (`TorrentConfig::spread`).
    Origin,
}

/// `null` when port mapping is off; else whether the router forwards the ports, by which
/// protocol, and the external addresses.
pub fn port_mapping_json(state: Option<&shoal::port_mapping::MappingState>) -> serde_json::Value {
    let Some(state) = state else { return serde_json::Value::Null };
    match &state.mapped {
        Some(m) => serde_json::json!({
            "mapped": true,
            "protocol": m.protocol.name(),
            "tcp": m.tcp.to_string(),
            "udp": m.udp.map(|a| a.to_string()),
            "dht": m.dht.map(|a| a.to_string()),
        }),
        None => serde_json::json!({ "mapped": false, "searched": state.searched }),
    }
}

/// One line on stderr when the router forwards the port.
pub fn report_port_mapping(state: Option<&shoal::port_mapping::MappingState>) {
    if let Some(m) = state.and_then(|s| s.mapped.as_ref()) {
        eprintln!("the router forwards {} to us ({})", m.tcp, m.protocol.name());
    }
}

/// A `port_mapping` event (or a line) once the first search for a gateway has ended: no
/// command holds its start for the router (a search that nobody answers takes 2 s).
pub fn report_port_mapping_later(session: &Session, json: bool) {
    if let Some(updates) = session.watch_port_mapping() {
        tokio::spawn(report_port_mapping_when_searched(updates, json));
    }
}

async fn report_port_mapping_when_searched(
    mut updates: tokio::sync::watch::Receiver<shoal::port_mapping::MappingState>,
    json: bool,
) {
    let Ok(state) = updates.wait_for(|s| s.searched).await.map(|s| s.clone()) else { return };
    if json {
        let mut line = port_mapping_json(Some(&state));
        line["event"] = serde_json::json!("port_mapping");
        println!("{line}");
    } else {
        report_port_mapping(Some(&state));
    }
}

/// How a command's session starts.
pub struct SessionOptions {
    /// Where peers connect (any port when `None`).
    pub listen: Option<SocketAddr>,
    pub webrtc: Option<shoal::webrtc::WebRtcConfig>,
    pub discovery: Discovery,
    pub purpose: SessionPurpose,
    /// The upload and download caps.
    pub rates: crate::RateArgs,
}

/// The session of one command.
pub async fn start_session(options: SessionOptions) -> Result<Session, CliError> {
    // Any port by default: a fixed one would collide with other clients on the machine.
    let listen = options.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut config = SessionConfig {
        listen: Some(listen),
        webrtc: options.webrtc,
        max_upload_rate: options.rates.max_upload_rate,
        max_download_rate: options.rates.max_download_rate,
        dht: options.discovery.dht,
        lsd: options.discovery.lsd,
        port_mapping: options.discovery.port_mapping,
        encryption: options.discovery.encryption,
        utp: options.discovery.utp,
        resume_dir: options.discovery.resume_dir,
        ..SessionConfig::default()
    };
    config.torrent.file_ends_first = options.purpose == SessionPurpose::Streaming;
    config.torrent.spread = options.purpose == SessionPurpose::Origin;
    Session::new(config).await.map_err(|e| CliError::with_source("cannot start the session", e))
}

/// Runs a torrent to completion (and beyond, when seeding).
pub async fn run(options: TransferOptions, source: TorrentSource) -> Result<(), CliError> {
    let peers = resolve_peers(&options.peers).await?;
    let purpose = match options.spread {
        true => SessionPurpose::Origin,
        false => SessionPurpose::Transfer,
    };
    let session = start_session(SessionOptions {
        listen: options.listen,
        webrtc: options.webrtc.clone(),
        discovery: options.discovery.clone(),
        purpose,
        rates: options.rates,
    })
    .await?;
    let added = session.add_torrent(AddTorrent {
        source,
        target: StorageTarget::Dir(options.output.clone()),
        only_files: options.only_files.clone(),
        file_priorities: None,
        peers,
        extra_trackers: options.trackers.clone(),
        web_seeds: options.web_seeds.clone(),
    });
    let handle = match added {
        Ok(handle) => handle,
        Err(e) => {
            session.shutdown().await;
            return Err(CliError::with_source("cannot add the torrent", e));
        }
    };
    let listen = session.listen_addr();
    let magnet = options.print_magnet.clone().map(|mut m| {
        if let Some(addr) = listen.filter(|a| !a.ip().is_unspecified()) {
            m.peers.push(addr.to_string());
        }
        m.to_uri()
    });
    // What the router forwards is known once it has answered (a UPnP search takes up to 2 s):
    // the start is not held for it; a `port_mapping` event follows.
    let port_mapping = session.port_mapping();
    if options.json {
        let line = serde_json::json!({
            "event": "started",
            "info_hash": handle.info_hash().to_hex(),
            "listen": listen.map(|a| a.to_string()),
            "webrtc": session.webrtc_addr().map(|a| a.to_string()),
            "webrtc_stun": session.webrtc_stun_address().map(|a| a.to_string()),
            "dht": session.dht().map(|d| d.local_addr().to_string()),
            "port_mapping": port_mapping_json(port_mapping.as_ref()),
            "magnet": magnet,
        });
        println!("{line}");
    } else {
        if let Some(addr) = listen {
            eprintln!("listening for peers on {addr}");
        }
        if let Some(magnet) = &magnet {
            println!("{magnet}");
        }
    }

    report_port_mapping_later(&session, options.json);

    let progress = Progress::new(options.json, session.dht().cloned());
    let outcome = watch_until_done(&handle, &progress, options.require_complete).await;
    progress.finish();
    if let Err(e) = outcome {
        handle.shutdown().await;
        session.shutdown().await;
        return Err(e);
    }
    let status = handle.status();
    report_done(&handle, &status, options.json);

    if options.keep_seeding {
        if options.json {
            println!(
                "{}",
                serde_json::json!({"event": "seeding", "info_hash": handle.info_hash().to_hex()})
            );
        } else {
            eprintln!("seeding; press Ctrl-C to stop");
        }
        seed_until_interrupted(&session, &handle, options.json).await;
    }
    handle.shutdown().await;
    session.shutdown().await;
    Ok(())
}

async fn watch_until_done(
    handle: &TorrentHandle,
    progress: &Progress,
    require_complete: bool,
) -> Result<(), CliError> {
    let mut rx = handle.watch();
    let mut interrupted = std::pin::pin!(crate::signals::wait_for_signal());
    loop {
        let status = rx.borrow_and_update().clone();
        progress.update(handle, &status);
        match &status.phase {
            Phase::Seeding => return Ok(()),
            Phase::Downloading if require_complete => {
                let s = &status.stats;
                return Err(CliError::msg(format!(
                    "the data in {} is incomplete: {} of {} pieces verified; use `shoal download` to fetch the rest",
                    status.storage_root.as_deref().map_or_else(|| "the folder".into(), |p| p.display().to_string()),
                    s.pieces_have,
                    s.pieces_total
                )));
            }
            Phase::Failed(e) => return Err(CliError::msg(e.clone())),
            Phase::Stopped => return Err(CliError::msg("the torrent stopped")),
            _ => {}
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

async fn seed_until_interrupted(session: &Session, handle: &TorrentHandle, json: bool) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut interrupted = std::pin::pin!(crate::signals::wait_for_signal());
    loop {
        tokio::select! {
            _ = &mut interrupted => return,
            _ = ticker.tick() => {
                if json {
                    let status = handle.status();
                    let s = status.stats;
                    println!("{}", serde_json::json!({
                        "event": "stats", "uploaded": s.uploaded, "upload_rate": s.upload_rate, "peers": s.peers,
                        "peers_by_source": s.peers_by_source,
                        "dht_nodes": session.dht().map(Dht::node_count),
                        "webrtc_peers": status.webrtc_peers,
                        "peers_by_transport": status.peers_by_transport,
                        "encrypted_peers": status.encrypted_peers,
                        "protocol_violations": s.protocol_violations,
                        // Current: the endpoint asks the STUN server again and again.
                        "webrtc_stun": session.webrtc_stun_address().map(|a| a.to_string()),
                    }));
                }
            }
        }
    }
}

fn report_done(handle: &TorrentHandle, status: &TorrentStatus, json: bool) {
    let name = handle.name().unwrap_or_else(|| handle.info_hash().to_hex());
    let root = status.storage_root.as_ref().map(|p| p.display().to_string());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "event": "complete",
                "name": name,
                "info_hash": handle.info_hash().to_hex(),
                "downloaded": status.stats.downloaded,
                "uploaded": status.stats.uploaded,
                "wasted": status.stats.wasted,
                "peers": status.stats.peers,
                "peers_by_source": status.stats.peers_by_source,
                "connections_by_source": status.stats.connections_by_source,
                "connections_by_transport": status.connections_by_transport,
                "encrypted_connections": status.encrypted_connections,
                "webrtc_peers": status.webrtc_peers,
                "peers_by_transport": status.peers_by_transport,
                "encrypted_peers": status.encrypted_peers,
                "web_seeds": status.stats.web_seeds,
                "web_seed_downloaded": status.stats.web_seed_downloaded,
                "web_seed_status": web_seeds_json(status),
                "protocol_violations": status.stats.protocol_violations,
                "path": root,
            })
        );
    } else {
        eprintln!(
            "{name}: complete ({} verified pieces) in {}",
            status.stats.pieces_have,
            root.unwrap_or_default()
        );
    }
}

/// A progress bar on a terminal, JSON lines with `--json`, nothing otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    json: bool,
    last_json: std::cell::Cell<Option<std::time::Instant>>,
    /// The session's DHT node, whose size the progress shows.
    dht: Option<Dht>,
    /// How the start found the data already there has been told.
    told_checked: std::cell::Cell<bool>,
}

impl Progress {
    fn new(json: bool, dht: Option<Dht>) -> Self {
        let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            None
        } else {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Some(bar)
        };
        Progress {
            bar,
            json,
            last_json: std::cell::Cell::new(None),
            dht,
            told_checked: std::cell::Cell::new(false),
        }
    }

    /// The data already there was found from the resume record (`resumed`) or by hashing.
    fn tell_checked(&self, handle: &TorrentHandle, s: &shoal_proto::torrent::Stats, resumed: bool) {
        let from = if resumed { "resume" } else { "hash" };
        if self.json {
            let line = serde_json::json!({
                "event": "checked",
                "info_hash": handle.info_hash().to_hex(),
                "from": from,
                "pieces_have": s.pieces_have,
                "pieces_total": s.pieces_total,
            });
            println!("{line}");
        } else if resumed {
            eprintln!(
                "{} of {} pieces already verified (resume record; the files are unchanged)",
                s.pieces_have, s.pieces_total
            );
        }
    }

    fn update(&self, handle: &TorrentHandle, status: &TorrentStatus) {
        let s = &status.stats;
        if let Some(resumed) = status.resumed.filter(|_| !self.told_checked.replace(true)) {
            self.tell_checked(handle, s, resumed);
        }
        let total = status.info.as_ref().map_or(0, |i| i.total_length);
        let done = match (&status.info, s.bytes_left) {
            (Some(_), Some(left)) => total.saturating_sub(left),
            _ => 0,
        };
        if let Some(bar) = &self.bar {
            let msg = match &status.phase {
                Phase::FetchingMetadata => {
                    format!("metadata ({})", peer_counts(status, self.dht.as_ref()))
                }
                Phase::Checking { done, total } => format!("checking {done}/{total}"),
                Phase::Downloading => peer_counts(status, self.dht.as_ref()),
                Phase::Seeding => "complete".to_string(),
                Phase::Failed(_) | Phase::Stopped => "stopped".to_string(),
            };
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(msg);
        }
        if self.json {
            let due = self.last_json.get().is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                self.last_json.set(Some(std::time::Instant::now()));
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "progress",
                        "info_hash": handle.info_hash().to_hex(),
                        "phase": format!("{:?}", status.phase),
                        "bytes_done": done,
                        "bytes_total": total,
                        "download_rate": s.download_rate,
                        "upload_rate": s.upload_rate,
                        "peers": s.peers,
                        "peers_by_source": s.peers_by_source,
                        "dht_nodes": self.dht.as_ref().map(Dht::node_count),
                        "webrtc_peers": status.webrtc_peers,
                        "peers_by_transport": status.peers_by_transport,
                        "encrypted_peers": status.encrypted_peers,
                        "web_seeds": s.web_seeds,
                        "web_seed_downloaded": s.web_seed_downloaded,
                        "web_seed_status": web_seeds_json(status),
                    })
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// "3 peers (tracker 2, dht 1; tcp 2, webrtc 1; 2 encrypted), 1 web seed, DHT 120 nodes".
fn peer_counts(status: &TorrentStatus, dht: Option<&Dht>) -> String {
    let mut text = format!("{} peers", status.stats.peers);
    if !status.stats.peers_by_source.is_empty() {
        let counts = |by: &std::collections::BTreeMap<&str, usize>| {
            by.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
        };
        text.push_str(&format!(
            " ({}; {}; {} encrypted)",
            counts(&status.stats.peers_by_source),
            counts(&status.peers_by_transport),
            status.encrypted_peers
        ));
    }
    match status.stats.web_seeds {
        0 => {}
        1 => text.push_str(", 1 web seed"),
        n => text.push_str(&format!(", {n} web seeds")),
    }
    if let Some(dht) = dht {
        text.push_str(&format!(", DHT {} nodes", dht.node_count()));
    }
    text
}

/// Each web seed as JSON: its URL, `active`/`backing_off`/`disabled`, what it delivered, and
/// why its last fetch failed.
pub fn web_seeds_json(status: &TorrentStatus) -> serde_json::Value {
    let seeds = status.web_seeds.iter().map(|w| {
        let state = match w.state {
            WebSeedState::Active => "active",
            WebSeedState::BackingOff { .. } => "backing_off",
            WebSeedState::Disabled => "disabled",
        };
        serde_json::json!({
            "url": w.url,
            "state": state,
            "downloaded": w.downloaded,
            "download_rate": w.download_rate,
            "failures": w.failures,
            "hash_failures": w.hash_failures,
            "error": w.last_error,
        })
    });
    serde_json::Value::Array(seeds.collect())
}
