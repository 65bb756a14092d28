//! `shoal serve`: everything a website needs in one process. It serves the web app (embedded
//! in the binary at build time), runs the tracker (WebSocket signalling for browsers, HTTP
//! and UDP for classic clients), and seeds the given files as a hybrid peer (TCP and WebRTC)
//! and as an HTTP web seed, so a page plays them even before any peer is around. With no
//! files it shares a sample video the project made (assets/shoal-sample.mp4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use clap::Args;
use shoal::{AddTorrent, StorageTarget, TorrentSource};
use shoal_proto::metainfo::Metainfo;
use shoal_proto::percent;
use shoal_tracker::ws::{handshake, WsHandoff};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::create::{share_in_place, SharedInPlace};
use crate::output::{CliError, Context};
use crate::stream::range::{self, RangeRequest};
use crate::{transfer, DiscoveryArgs, WebRtcArgs};

mod tls_listener;

mod access;
mod api;
mod assets;
mod embed;
mod library;
mod transmission;

/// The video shared when no files are given.
const SAMPLE: &[u8] = include_bytes!("../../../assets/shoal-sample.mp4");
const SAMPLE_NAME: &str = "shoal-sample.mp4";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Files or folders to share [default: a sample video].
    #[arg(value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// The web app's (and the web seed's) HTTP listener; port 0 picks free ports for all.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// A listener of its own for the WebSocket tracker [default: none; browsers announce to
    /// /announce on the --http address].
    #[arg(long, value_name = "ADDR")]
    pub tracker_ws: Option<SocketAddr>,
    /// The HTTP and UDP tracker's listener [default: the --http address, next port].
    #[arg(long, value_name = "ADDR")]
    pub tracker: Option<SocketAddr>,
    /// The host name (or IP) browsers and peers reach this machine at, for the links, the
    /// trackers and the web seed [default: the --http address's IP].
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// Address to accept incoming peer connections (TCP) on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain: with --tls-key, the app, the web seed and the HTTP and
    /// WebSocket trackers speak TLS (https://, wss://); pages served over https need it, and
    /// browsers outside localhost need https for Service Workers and SubtleCrypto.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Answer every request, even for pieces the audience could pass on to each other (by
    /// default each piece is sent about once and viewers share it).
    #[arg(long)]
    pub no_spread: bool,
    #[command(flatten)]
    pub rates: crate::RateArgs,
    /// The library: torrents added through the API or Transmission RPC, their folders, file
    /// selection, paused state and totals, kept across restarts
    /// [default: $XDG_DATA_HOME/shoal/server, else ~/.local/share/shoal/server].
    #[arg(long, value_name = "DIR", env = "SHOAL_STATE")]
    pub state: Option<PathBuf>,
    /// Where torrents added through the API go unless the request names a folder
    /// [default: ~/Downloads, else the state folder's downloads/].
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// Torrents of the library that download at once; the others wait in a queue (seeding
    /// ones do not count).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_active_downloads: usize,
    /// USER:PASSWORD for the management API and Transmission RPC (HTTP Basic). Needed when
    /// --http listens beyond loopback; without it the management API is then off. The app,
    /// the shared files, the web seed and the tracker stay public.
    #[arg(long, value_name = "USER:PASSWORD", env = "SHOAL_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// A file whose first line is USER:PASSWORD, as --auth (kept out of the process list and
    /// the shell's history).
    #[arg(long, value_name = "FILE", conflicts_with = "auth")]
    pub auth_file: Option<PathBuf>,
    /// Piece size of the torrents made for the FILES, as `create --piece-size` (16KiB to
    /// 256MiB) [default: as `create`].
    #[arg(long, value_name = "SIZE", value_parser = crate::parse_piece_size)]
    pub piece_size: Option<u32>,
    #[command(flatten)]
    pub webrtc: WebRtcArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// One shared torrent, as the web seed and the listing see it.
struct Shared {
    meta: Metainfo,
    /// The .torrent, served at `/torrent/N.torrent` (the magnet's `xs`).
    torrent_file: axum::body::Bytes,
    /// The folder the torrent's paths start in.
    root: PathBuf,
    magnet: String,
    app_url: String,
    /// A player for each file, to paste into other pages.
    embeds: Vec<embed::Embed>,
}

struct AppState {
    /// The app's URL, without a trailing slash.
    base: String,
    /// The ws:// (or wss://) URL the app's pages announce to.
    ws_tracker: String,
    /// Where `/announce` upgrades go: the tracker.
    ws_handoff: WsHandoff,
    /// The files of the command line, by number (the web seed's and `/torrent/N`'s).
    shared: Vec<Shared>,
    /// Every torrent: the shared ones and those added through the API.
    library: Arc<library::Library>,
    /// The process's upload cap, which web seed answers wait on like peer connections.
    upload_limit: shoal::rate::RateCap,
    /// The process's download cap, which the API and Transmission RPC change.
    download_limit: shoal::rate::RateCap,
    /// Transmission RPC's `X-Transmission-Session-Id`.
    transmission_session: String,
    listen_port: Option<u16>,
    started: std::time::Instant,
    /// What the app's page is told of the library (`<meta name="shoal-library">`): `open`,
    /// `auth` (the browser asks for the password), or nothing when the API is off.
    library_access: Option<&'static str>,
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen on {}", args.http))?;
    let http_addr = listener.local_addr().context("no local address")?;
    // Read the certificate before anything starts, so a bad one is the only message.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(shoal_tracker::tls_acceptor(cert, key).map_err(|e| CliError::msg(e.to_string()))?)
        }
        _ => None,
    };
    let tracker = start_tracker(&args).await?;
    let urls = Urls::new(&args, http_addr, &tracker, tls.is_some());
    let listener = match tls {
        Some(acceptor) => AppListener::Tls(
            tls_listener::TlsListener::new(listener, acceptor).context("cannot listen with TLS")?,
        ),
        None => AppListener::Plain(listener),
    };

    // The library's folder first: one already in use is the only message.
    let store = match args.state.clone().or_else(|| crate::default_data("server")) {
        Some(dir) => {
            Some(library::store::Store::open(&dir).map_err(|e| CliError::msg(e.to_string()))?)
        }
        None => None,
    };
    let download_dir = match (&args.download_dir, &store) {
        (Some(dir), _) => std::path::absolute(dir).context("cannot use --download-dir")?,
        (None, store) => crate::default_downloads()
            .or_else(|| store.as_ref().map(|s| s.dir().join("downloads")))
            .unwrap_or_else(|| std::env::temp_dir().join("shoal-downloads")),
    };
    let auth = match (&args.auth, &args.auth_file) {
        (Some(auth), _) => Some(auth.clone()),
        (None, Some(file)) => Some(access::read_auth_file(file).map_err(CliError::msg)?),
        (None, None) => None,
    };
    let access = access::Access::new(
        http_addr.ip(),
        args.tls_cert.is_some(),
        auth.as_deref(),
        args.public_host.as_deref(),
    );

    // With nothing given, the sample video, written where it can be seeded from.
    let sample_dir = std::env::temp_dir().join(format!("shoal-serve-{}", std::process::id()));
    let files = files_to_share(&args, &sample_dir)?;
    let purpose = match args.no_spread {
        false => transfer::SessionPurpose::Origin,
        true => transfer::SessionPurpose::Transfer,
    };
    let session = Arc::new(
        transfer::start_session(transfer::SessionOptions {
            listen: args.listen,
            webrtc: args.webrtc.config(),
            discovery: args.discovery.discovery(),
            purpose,
            rates: args.rates,
        })
        .await?,
    );
    let remember = args.discovery.discovery().resume_dir;
    let (shared, handles) =
        match seed_files(&session, &files, &urls, args.piece_size, args.json, remember).await {
            Ok(seeding) => seeding,
            Err(e) => {
                // Minutes of hashing may have passed: the router's mapping is made by now.
                session.shutdown().await;
                return Err(e);
            }
        };
    let library = Arc::new(library::Library::new(
        session.clone(),
        store,
        download_dir,
        args.max_active_downloads,
    ));
    for (index, (shared, handle)) in shared.iter().zip(handles).enumerate() {
        library.add_shared(index, shared.meta.clone(), shared.root.clone(), handle);
    }
    if let Err(e) = library.load() {
        library.shutdown().await;
        session.shutdown().await;
        return Err(CliError::msg(e.to_string()));
    }
    print_serving(args.json, &urls, &session, &shared, &library, &access);
    // The link is out already; whether the router forwards the port follows.
    transfer::report_port_mapping_later(&session, args.json);

    let (stop_ticks, ticks_stopped) = tokio::sync::watch::channel(false);
    let ticking = tokio::spawn(library.clone().run(ticks_stopped));
    let state = Arc::new(AppState {
        base: urls.base.clone(),
        ws_tracker: urls.ws_tracker,
        ws_handoff: tracker.ws_handoff(),
        shared,
        library: library.clone(),
        upload_limit: session.upload_limit(),
        download_limit: session.download_limit(),
        transmission_session: transmission::new_session_id(),
        listen_port: session.listen_addr().map(|a| a.port()),
        started: std::time::Instant::now(),
        library_access: access.page_hint(),
    });
    let result = serve_app(listener, state, access).await;
    let _ = stop_ticks.send(true);
    let _ = ticking.await;
    shut_down(args.json, &session, &library, tracker).await;
    let _ = std::fs::remove_dir_all(&sample_dir);
    result
}

/// The tracker: HTTP and UDP on `--tracker` (by default the port after the app's), and
/// WebSocket on `--tracker-ws` if given (else on the app's port, through `/announce`).
async fn start_tracker(args: &ServeArgs) -> Result<shoal_tracker::RunningTracker, CliError> {
    let classic = args.tracker.unwrap_or_else(|| match args.http.port() {
        0 => SocketAddr::new(args.http.ip(), 0),
        p => SocketAddr::new(args.http.ip(), p.saturating_add(1)),
    });
    shoal_tracker::start(shoal_tracker::Config {
        ws: args.tracker_ws,
        http: Some(classic),
        udp: Some(classic),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        ..shoal_tracker::Config::default()
    })
    .await
    .context("cannot start the tracker")
}

/// Where browsers and peers reach this server, as links say it.
struct Urls {
    /// The app, without a trailing slash.
    base: String,
    ws_tracker: String,
    http_tracker: String,
    udp_tracker: String,
}

impl Urls {
    fn new(
        args: &ServeArgs,
        http_addr: SocketAddr,
        tracker: &shoal_tracker::RunningTracker,
        tls: bool,
    ) -> Self {
        let (http_scheme, ws_scheme) = if tls { ("https", "wss") } else { ("http", "ws") };
        let host = args.public_host.clone().unwrap_or_else(|| host_of(http_addr.ip()));
        let port_of = |a: Option<SocketAddr>| a.map_or(0, |a| a.port());
        // Browsers announce on the app's own port unless the tracker has a listener of its
        // own: one port to open, proxy or put a certificate on.
        let ws_tracker = match tracker.ws_addr {
            Some(own) => format!("{ws_scheme}://{host}:{}", own.port()),
            None => format!("{ws_scheme}://{host}:{}/announce", http_addr.port()),
        };
        Urls {
            base: format!("{http_scheme}://{host}:{}", http_addr.port()),
            ws_tracker,
            http_tracker: format!("{http_scheme}://{host}:{}/announce", port_of(tracker.http_addr)),
            udp_tracker: format!("udp://{host}:{}", port_of(tracker.udp_addr)),
        }
    }

    /// Every torrent's trackers, each its own tier: browsers use the first.
    fn trackers(&self) -> Vec<String> {
        vec![self.ws_tracker.clone(), self.http_tracker.clone(), self.udp_tracker.clone()]
    }
}

/// The files given, or with none the sample video, written into `sample_dir`.
fn files_to_share(
    args: &ServeArgs,
    sample_dir: &std::path::Path,
) -> Result<Vec<PathBuf>, CliError> {
    if !args.files.is_empty() {
        return Ok(args.files.clone());
    }
    std::fs::create_dir_all(sample_dir).context("cannot write the sample video")?;
    let path = sample_dir.join(SAMPLE_NAME);
    std::fs::write(&path, SAMPLE).context("cannot write the sample video")?;
    Ok(vec![path])
}

/// The web seed URL of the torrent made of `path`, served as number `index`. BEP 19 has a
/// client append the torrent's name to a URL ending in `/`, but WebTorrent (3.0) takes a
/// single-file torrent's URL as the file's own: a file gets its own URL, which both read
/// alike; a folder gets the folder's.
fn web_seed_url(base: &str, index: usize, path: &std::path::Path) -> String {
    let mut url = format!("{base}/webseed/{index}/");
    let file = std::fs::canonicalize(path).ok().filter(|p| p.is_file());
    if let Some(name) = file.as_ref().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        percent::encode_into(name.as_bytes(), &mut url);
    }
    url
}

/// Makes a torrent of each file in place (with this server as its trackers and web seed)
/// and seeds it.
async fn seed_files(
    session: &shoal::Session,
    files: &[PathBuf],
    urls: &Urls,
    piece_size: Option<u32>,
    json: bool,
    remember: Option<PathBuf>,
) -> Result<(Vec<Shared>, Vec<shoal::TorrentHandle>), CliError> {
    let mut shared = Vec::new();
    let mut handles = Vec::new();
    for (index, path) in files.iter().enumerate() {
        let web_seed = web_seed_url(&urls.base, index, path);
        let SharedInPlace { meta, root } = share_in_place(
            path,
            urls.trackers(),
            vec![web_seed],
            piece_size,
            json,
            remember.clone(),
        )
        .await?;
        let handle = session
            .add_torrent(AddTorrent {
                source: TorrentSource::Metainfo(Box::new(meta.clone())),
                target: StorageTarget::Dir(root.clone()),
                only_files: None,
                file_priorities: None,
                peers: Vec::new(),
                extra_trackers: Vec::new(),
                web_seeds: Vec::new(),
            })
            .map_err(|e| CliError::with_source("cannot add the torrent", e))?;
        handles.push(handle);
        // The .torrent over HTTP too (`xs`): a page then has the metadata without waiting for
        // a peer to send it (BEP 9), and its web seed can start at once.
        let mut magnet = meta.to_magnet();
        magnet.exact_sources.push(format!("{}/torrent/{index}.torrent", urls.base));
        let magnet = magnet.to_uri();
        let torrent_file = axum::body::Bytes::from(meta.to_torrent_bytes());
        let app_url = format!("{}/#magnet={}", urls.base, percent::encode(magnet.as_bytes()));
        let embeds = embed::embeds(&urls.base, index, &meta, &magnet);
        shared.push(Shared { meta, torrent_file, root, magnet, app_url, embeds });
    }
    Ok((shared, handles))
}

/// Says where everything is: a `serving` JSON line, or the links for people.
fn print_serving(
    json: bool,
    urls: &Urls,
    session: &shoal::Session,
    shared: &[Shared],
    library: &library::Library,
    access: &access::Access,
) {
    let Urls { base, ws_tracker, http_tracker, udp_tracker } = urls;
    let management = access.enabled();
    let engine_built = assets::find("pkg/shoal_web_bg.wasm").is_some();
    if json {
        let files: Vec<_> = shared
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.meta.info.name,
                    "info_hash": s.meta.info_hash.to_hex(),
                    "magnet": s.magnet,
                    "app_url": s.app_url,
                    "embeds": s.embeds.iter().map(|e| serde_json::json!({
                        "path": e.path,
                        "http_url": e.http_url,
                        "player_url": e.player_url,
                        "html": e.html,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let line = serde_json::json!({
            "event": "serving",
            "url": format!("{base}/"),
            "tracker": {"ws": ws_tracker, "http": http_tracker, "udp": udp_tracker},
            "listen": session.listen_addr().map(|a| a.to_string()),
            "webrtc": session.webrtc_addr().map(|a| a.to_string()),
            "webrtc_stun": session.webrtc_stun_address().map(|a| a.to_string()),
            "engine_built": engine_built,
            "files": files,
            "api": management.then(|| format!("{base}/api/")),
            "transmission_rpc": management.then(|| format!("{base}/transmission/rpc")),
            "state_dir": library.state_dir(),
            "download_dir": library.download_dir(),
            "library": library.entries().len() - shared.len(),
        });
        println!("{line}");
    } else {
        println!("Shoal is serving the web app at {base}/");
        println!("tracker: {ws_tracker}  {http_tracker}  {udp_tracker}");
        if management {
            println!("API: {base}/api/  Transmission RPC: {base}/transmission/rpc");
        }
        for s in shared {
            println!("\n{}\n  play: {}\n  magnet: {}", s.meta.info.name, s.app_url, s.magnet);
            for e in &s.embeds {
                println!("  embed {}: {}", e.path, e.html);
            }
        }
    }
    if !management {
        eprintln!(
            "shoal serve: the management API and Transmission RPC are off: others can reach \
             this server (--http beyond loopback, --public-host or TLS) and it has no --auth \
             USER:PASSWORD"
        );
    }
    if !engine_built {
        eprintln!(
            "warning: this binary was built without the browser engine (web/pkg): run \
             scripts/build-web.sh, then build shoal again"
        );
    }
}

/// The app's listener: TLS when a certificate was given.
enum AppListener {
    Plain(tokio::net::TcpListener),
    Tls(tls_listener::TlsListener),
}

/// Serves the app, the web seed and `/announce` on `listener` until a signal asks to stop.
async fn serve_app(
    listener: AppListener,
    state: Arc<AppState>,
    access: access::Access,
) -> Result<(), CliError> {
    let management = api::routes()
        .merge(transmission::routes())
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(access), access::guard));
    let app = Router::new()
        .route("/", get(index))
        .route("/announce", get(ws_announce))
        .route("/index.html", get(index))
        .route("/webseed/{index}/{*path}", get(web_seed).head(web_seed))
        .route("/torrent/{file}", get(torrent_file))
        .merge(management)
        .merge(api::public_routes())
        .fallback(get(asset))
        .with_state(state);
    let serving = async {
        match listener {
            AppListener::Tls(listener) => {
                axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>())
                    .with_graceful_shutdown(crate::signals::wait_for_signal())
                    .await
            }
            AppListener::Plain(listener) => {
                axum::serve(listener, app.into_make_service_with_connect_info::<PeerAddr>())
                    .with_graceful_shutdown(crate::signals::wait_for_signal())
                    .await
            }
        }
    };
    // Answers in flight get a moment to finish; a player streaming a film (or a download of
    // the web seed) would otherwise hold the stop for as long as it reads.
    let grace = async {
        crate::signals::wait_for_signal().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = serving => result.context("the HTTP server failed"),
        () = grace => Ok(()),
    }
}

/// Stops seeding (after a `stopped` line with each torrent's counts, for `--json`) and the
/// tracker.
async fn shut_down(
    json: bool,
    session: &shoal::Session,
    library: &library::Library,
    tracker: shoal_tracker::RunningTracker,
) {
    eprintln!("shoal serve: shutting down");
    if json {
        let handles: Vec<_> = library.entries().into_iter().filter_map(|e| e.handle).collect();
        println!("{}", stopped_event(&handles));
    }
    library.shutdown().await;
    session.shutdown().await;
    let _ = tracker.shutdown().await;
}

/// What each torrent sent its peers, and how its spreading decided, for `--json`.
fn stopped_event(handles: &[shoal::TorrentHandle]) -> serde_json::Value {
    let torrents: Vec<_> = handles
        .iter()
        .map(|handle| {
            let status = handle.status();
            let stats = status.stats;
            serde_json::json!({
                "info_hash": handle.info_hash().to_hex(),
                "uploaded": stats.uploaded,
                "peers": stats.peers,
                "peers_by_source": stats.peers_by_source,
                "connections_by_source": stats.connections_by_source,
                "connections_by_transport": status.connections_by_transport,
                "encrypted_connections": status.encrypted_connections,
                "spread_refused": stats.spread_refused,
                "spread_granted_again": stats.spread_granted_again,
                "protocol_violations": stats.protocol_violations,
            })
        })
        .collect();
    serde_json::json!({ "event": "stopped", "torrents": torrents })
}

/// How a listening IP appears in links: the unspecified address means "this machine".
fn host_of(ip: IpAddr) -> String {
    match ip {
        ip if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The app's page, told which tracker to announce to.
async fn index(State(state): State<Arc<AppState>>) -> Response {
    let Some(page) = assets::find("index.html") else {
        return (StatusCode::NOT_FOUND, "this shoal was built without its web app").into_response();
    };
    let page = String::from_utf8_lossy(page.bytes);
    let mut tag = format!("<meta name=\"shoal-trackers\" content=\"{}\">\n", state.ws_tracker);
    if let Some(access) = state.library_access {
        tag.push_str(&format!("<meta name=\"shoal-library\" content=\"{access}\">\n"));
    }
    // Ours goes first, so it is the one the app finds.
    let page = match page.find("<meta name=\"shoal-trackers\"") {
        Some(at) => format!("{}{tag}{}", &page[..at], &page[at..]),
        None => match page.find("</head>") {
            Some(at) => format!("{}{tag}{}", &page[..at], &page[at..]),
            None => format!("{tag}{page}"),
        },
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        page,
    )
        .into_response()
}

/// The client's address, plain or TLS, for the tracker's per-IP limits.
#[derive(Clone, Copy, Debug)]
struct PeerAddr(SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls_listener::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tls_listener::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The WebSocket tracker on the app's port: the upgrade is answered here and the connection
/// handed to the tracker, which applies its own limits.
async fn ws_announce(
    State(state): State<Arc<AppState>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let accept = match handshake::upgrade(|name| headers.get(name).map(|v| v.as_bytes())) {
        Ok(Some(accept)) => accept,
        Ok(None) => {
            return (StatusCode::UPGRADE_REQUIRED, "this is a WebSocket tracker\n").into_response()
        }
        Err(_) => {
            return (StatusCode::BAD_REQUEST, "not a WebSocket version 13 upgrade\n")
                .into_response()
        }
    };
    let Some(admission) = state.ws_handoff.admit(peer) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the tracker is full\n").into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        // A client that leaves before the upgrade completes gives its room back (drop).
        if let Ok(upgraded) = upgrade.await {
            admission.serve(hyper_util::rt::TokioIo::new(upgraded)).await;
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// A file of the web app, compressed and revalidated (`serve/assets.rs`).
async fn asset(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let Some(asset) = assets::find(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let kind = match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    assets::respond(asset, kind, &headers)
}

/// How long answers still being sent may go on after a stop was asked for.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes a capped web seed answer sends per read (each waits its turn under the cap).
const WEB_SEED_CHUNK: usize = 64 * 1024;

/// The web seed (BEP 19): `/webseed/<n>/<torrent name>[/<path>]` answers with the file's
/// bytes, with ranges. Only the torrent's own files are reachable, whatever the path says.
async fn web_seed(
    State(state): State<Arc<AppState>>,
    UrlPath((index, path)): UrlPath<(usize, String)>,
    headers: HeaderMap,
    method: axum::http::Method,
) -> Response {
    let Some(shared) = state.shared.get(index) else {
        return (StatusCode::NOT_FOUND, "no such torrent").into_response();
    };
    let wanted: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let info = &shared.meta.info;
    let file = info.files.iter().find(|f| {
        // Multi-file paths are [name, dirs.., file]; single-file is [name].
        !f.padding && f.path.iter().map(String::as_str).eq(wanted.iter().copied())
    });
    let Some(file) = file else {
        return (StatusCode::NOT_FOUND, "no such file in the torrent").into_response();
    };
    let disk = file.path.iter().fold(shared.root.clone(), |p, c| p.join(c));
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range::parse(range_header, file.length) {
        Ok(RangeRequest::Full) => (StatusCode::OK, 0, file.length),
        Ok(RangeRequest::Partial { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        Err(range::RangeError::Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.length)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return with_cors(r);
        }
        Err(e) => return with_cors((StatusCode::BAD_REQUEST, e.to_string()).into_response()),
    };
    let mut body = Body::empty();
    if method != axum::http::Method::HEAD {
        let mut handle = match tokio::fs::File::open(&disk).await {
            Ok(f) => f,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
        if let Err(e) = handle.seek(std::io::SeekFrom::Start(start)).await {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        let reader = handle.take(end - start);
        // Read through the cap even while there is none: one can be set while it runs.
        body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            state.upload_limit.reader(reader),
            WEB_SEED_CHUNK,
        ));
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, file.length))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    with_cors(response)
}

/// `/torrent/N.torrent`: the .torrent of the torrent served as number N.
async fn torrent_file(
    State(state): State<Arc<AppState>>,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let index = file.strip_suffix(".torrent").and_then(|n| n.parse::<usize>().ok());
    let Some(shared) = index.and_then(|i| state.shared.get(i)) else {
        return (StatusCode::NOT_FOUND, "no such torrent").into_response();
    };
    let headers =
        [(header::CONTENT_TYPE, "application/x-bittorrent"), (header::CACHE_CONTROL, "no-cache")];
    with_cors((headers, shared.torrent_file.clone()).into_response())
}

/// Pages from any origin may use the web seed and the .torrent (they serve only what the
/// torrent shares).
fn with_cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Range, Content-Length, Accept-Ranges"),
    );
    response
}
