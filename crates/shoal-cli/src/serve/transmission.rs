//! Transmission's RPC protocol at `/transmission/rpc`, over the same library as the JSON API,
//! so that `transmission-remote`, Sonarr, Radarr, Flood and the remote apps built for
//! Transmission drive Shoal. Written from Transmission's RPC specification (rpc-spec.md):
//!
//! - A request without this process's `X-Transmission-Session-Id` gets `409` and the id in
//!   that header (a page of another site cannot read it: Transmission's CSRF guard).
//! - `{"method", "arguments", "tag"}` in, `{"result", "arguments", "tag"}` out; `result` is
//!   `"success"` or what went wrong.
//! - Torrents are named by number (our library's `id`), by hash string, or not at all (every
//!   torrent); `"recently-active"` is every torrent too.
//!
//! Methods: `session-get`, `session-stats`, `torrent-add`, `torrent-get`, `torrent-remove`,
//! `torrent-start`, `torrent-start-now`, `torrent-stop`, `torrent-set` (file selection; other
//! keys are accepted and ignored). Others answer `"method name not recognized"`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use shoal::{FilePriority, Phase, TorrentSource};

use super::api::{parse_torrent, resolve_source};
use super::library::{
    Entry, FilesChange, LibraryError, NewTorrent, Origin, Snapshot, State as EntryState,
};
use super::AppState;

const SESSION_HEADER: &str = "x-transmission-session-id";
/// The RPC version whose methods and fields this follows (Transmission 4.0's is 17).
const RPC_VERSION: u32 = 17;
/// The oldest clients it still speaks to (Transmission 2.80's is 14 ... 3.00's 15).
const RPC_VERSION_MINIMUM: u32 = 14;

/// The RPC's routes (guarded by the caller).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/transmission/rpc", post(rpc))
        .route("/transmission/rpc/", post(rpc))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The largest request: `torrent-add` carries a .torrent in base64 (4/3 of its size), and the
/// API takes .torrents of up to 32 MiB.
const MAX_BODY: usize = 44 << 20;

/// A new session id: random, so that another site's page cannot guess it.
pub fn new_session_id() -> String {
    (0..3).map(|_| format!("{:016x}", rand::random::<u64>())).collect()
}

async fn rpc(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    if given != Some(state.transmission_session.as_str()) {
        let mut response =
            (StatusCode::CONFLICT, "<h1>409: Conflict</h1><p>Invalid session id.</p>")
                .into_response();
        if let Ok(v) = HeaderValue::from_str(&state.transmission_session) {
            response.headers_mut().insert(SESSION_HEADER, v);
        }
        return response;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(request)) => Value::Object(request),
        _ => return (StatusCode::BAD_REQUEST, "the request is not a JSON object").into_response(),
    };
    let tag = request.get("tag").cloned();
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let empty = Value::Object(Map::new());
    let arguments = request.get("arguments").unwrap_or(&empty);
    let (result, arguments) = match call(&state, method, arguments).await {
        Ok(arguments) => ("success".to_owned(), arguments),
        Err(message) => (message, json!({})),
    };
    let mut answer = json!({ "result": result, "arguments": arguments });
    if let Some(tag) = tag {
        answer["tag"] = tag;
    }
    Json(answer).into_response()
}

async fn call(state: &AppState, method: &str, arguments: &Value) -> Result<Value, String> {
    match method {
        "session-get" => Ok(session_get(state)),
        "session-set" => session_set(state, arguments),
        "session-stats" => Ok(session_stats(state)),
        "torrent-add" => torrent_add(state, arguments).await,
        "torrent-get" => torrent_get(state, arguments),
        "torrent-remove" => {
            let delete = arguments.get("delete-local-data").and_then(Value::as_bool);
            for entry in changeable(state, arguments)? {
                let id = entry.id.to_string();
                state.library.remove(&id, delete.unwrap_or(false)).await.map_err(message)?;
            }
            Ok(json!({}))
        }
        "torrent-start" | "torrent-start-now" => {
            for entry in changeable(state, arguments)? {
                state.library.resume(&entry.id.to_string()).map_err(message)?;
            }
            Ok(json!({}))
        }
        "torrent-stop" => {
            for entry in changeable(state, arguments)? {
                state.library.pause(&entry.id.to_string()).await.map_err(message)?;
            }
            Ok(json!({}))
        }
        "torrent-set" => torrent_set(state, arguments).await,
        _ => Err("method name not recognized".into()),
    }
}

fn message(e: LibraryError) -> String {
    e.to_string()
}

/// The torrents `arguments.ids` names: a number, a hash string, a list of either,
/// `"recently-active"`, or nothing (all).
fn selected(state: &AppState, arguments: &Value) -> Result<Vec<Entry>, String> {
    let entries = state.library.entries();
    let ids = match arguments.get("ids") {
        None | Some(Value::Null) => return Ok(entries),
        Some(Value::String(s)) if s == "recently-active" => return Ok(entries),
        Some(Value::Array(ids)) => ids.clone(),
        Some(one) => vec![one.clone()],
    };
    let wanted = |entry: &Entry| {
        ids.iter().any(|id| match id {
            Value::Number(n) => n.as_u64() == Some(u64::from(entry.id)),
            Value::String(s) => s.eq_ignore_ascii_case(&entry.info_hash.to_hex()),
            _ => false,
        })
    };
    Ok(entries.into_iter().filter(|e| wanted(e)).collect())
}

/// [`selected`] without the files shared on the server's command line, which stay as the
/// command line says (a "stop all" stops what the library holds).
fn changeable(state: &AppState, arguments: &Value) -> Result<Vec<Entry>, String> {
    let entries = selected(state, arguments)?;
    Ok(entries.into_iter().filter(|e| e.origin == Origin::Added).collect())
}

fn session_get(state: &AppState) -> Value {
    let library = &state.library;
    let upload = state.upload_limit.rate();
    let download = state.download_limit.rate();
    json!({
        // Tools built for Transmission (Sonarr, Radarr) read the first version number and
        // want a Transmission they know; ours follows in parentheses, which they skip.
        "version": format!("4.0.6 (Shoal {})", env!("CARGO_PKG_VERSION")),
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": RPC_VERSION_MINIMUM,
        "rpc-version-semver": "5.3.0",
        "session-id": state.transmission_session,
        "download-dir": library.download_dir(),
        "config-dir": library.state_dir(),
        "download-queue-enabled": true,
        "download-queue-size": library.max_active_downloads(),
        "seed-queue-enabled": false,
        "speed-limit-up-enabled": upload.is_some(),
        // Transmission counts kB/s.
        "speed-limit-up": upload.map_or(0, |b| b / 1000),
        "speed-limit-down-enabled": download.is_some(),
        "speed-limit-down": download.map_or(0, |b| b / 1000),
        "alt-speed-enabled": false,
        "peer-port": state.listen_port,
        "encryption": "preferred",
        "dht-enabled": true,
        "pex-enabled": true,
        "lpd-enabled": true,
        "utp-enabled": true,
        "start-added-torrents": true,
        "rename-partial-files": false,
        "incomplete-dir-enabled": false,
        "units": {
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"], "speed-bytes": 1000,
            "size-units": ["kB", "MB", "GB", "TB"], "size-bytes": 1000,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"], "memory-bytes": 1024,
        },
    })
}

/// `session-set`: the speed limits (kB/s, 1000 bytes, as Transmission counts them) and the
/// download queue's size; other keys are taken and ignored.
fn session_set(state: &AppState, arguments: &Value) -> Result<Value, String> {
    let number = |key: &str| arguments.get(key).and_then(Value::as_u64);
    let flag = |key: &str| arguments.get(key).and_then(Value::as_bool);
    let caps = [
        (&state.upload_limit, "speed-limit-up", "speed-limit-up-enabled"),
        (&state.download_limit, "speed-limit-down", "speed-limit-down-enabled"),
    ];
    for (cap, limit_key, enabled_key) in caps {
        let kilobytes = number(limit_key);
        let current = cap.rate().map(|b| (b / 1000).max(1));
        match (flag(enabled_key), kilobytes) {
            (Some(false), _) => cap.set_rate(None),
            (Some(true), k) => match k.or(current) {
                Some(0) | None => return Err(format!("{limit_key} must be at least 1 kB/s")),
                Some(k) => cap.set_rate(Some(k.saturating_mul(1000))),
            },
            // A new value for a cap that is on; an off cap stays off until enabled.
            (None, Some(k)) if current.is_some() && k > 0 => {
                cap.set_rate(Some(k.saturating_mul(1000)))
            }
            (None, _) => {}
        }
    }
    if let Some(n) = number("download-queue-size") {
        state.library.set_max_active_downloads(n as usize);
    }
    Ok(json!({}))
}

fn session_stats(state: &AppState) -> Value {
    let entries = state.library.entries();
    let statuses: Vec<_> =
        entries.iter().filter_map(|e| e.handle.as_ref()).map(|h| h.status()).collect();
    let active =
        statuses.iter().filter(|s| s.stats.download_rate > 0 || s.stats.upload_rate > 0).count();
    let uploaded: u64 = entries.iter().map(Entry::uploaded).sum();
    let downloaded: u64 = entries.iter().map(Entry::downloaded).sum();
    let stats = json!({
        "uploadedBytes": uploaded,
        "downloadedBytes": downloaded,
        "filesAdded": entries.len(),
        "sessionCount": 1,
        "secondsActive": state.started.elapsed().as_secs(),
    });
    json!({
        "activeTorrentCount": active,
        "pausedTorrentCount": entries.iter().filter(|e| e.paused).count(),
        "torrentCount": entries.len(),
        "downloadSpeed": statuses.iter().map(|s| s.stats.download_rate).sum::<u64>(),
        "uploadSpeed": statuses.iter().map(|s| s.stats.upload_rate).sum::<u64>(),
        "cumulative-stats": stats,
        "current-stats": stats,
    })
}

async fn torrent_add(state: &AppState, arguments: &Value) -> Result<Value, String> {
    let source = match (arguments.get("metainfo"), arguments.get("filename")) {
        (Some(Value::String(encoded)), _) => {
            let cleaned: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|e| format!("invalid or corrupt torrent file (base64: {e})"))?;
            TorrentSource::Metainfo(Box::new(parse_torrent(&bytes).map_err(message)?))
        }
        (_, Some(Value::String(name))) => resolve_source(name).await.map_err(message)?,
        _ => return Err("no filename or metainfo specified".into()),
    };
    let dir = arguments.get("download-dir").and_then(Value::as_str).map(Into::into);
    let paused = arguments.get("paused").and_then(Value::as_bool).unwrap_or(false);
    let only_files = match (&source, arguments.get("files-unwanted")) {
        (TorrentSource::Metainfo(meta), Some(Value::Array(unwanted))) if !unwanted.is_empty() => {
            let unwanted: HashSet<u64> = unwanted.iter().filter_map(Value::as_u64).collect();
            let count = meta.info.files.len();
            Some((0..count).filter(|i| !unwanted.contains(&(*i as u64))).collect())
        }
        _ => None,
    };
    let new = NewTorrent { source, dir, paused, only_files };
    // Saving the library writes and syncs a file: not on the async workers.
    let library = state.library.clone();
    let adding = tokio::task::spawn_blocking(move || library.add(new));
    match adding.await.map_err(|e| e.to_string())? {
        Ok(entry) => Ok(json!({ "torrent-added": added(&entry) })),
        Err(LibraryError::Duplicate { info_hash, .. }) => {
            let entry = state.library.find(&info_hash).map_err(message)?;
            Ok(json!({ "torrent-duplicate": added(&entry) }))
        }
        Err(e) => Err(message(e)),
    }
}

fn added(entry: &Entry) -> Value {
    json!({ "id": entry.id, "name": entry.name(), "hashString": entry.info_hash.to_hex() })
}

/// `torrent-set`: `files-wanted` / `files-unwanted` and `priority-high` / `-normal` / `-low`
/// (file indices; an empty list means every file, as the specification says); other keys are
/// taken and ignored.
async fn torrent_set(state: &AppState, arguments: &Value) -> Result<Value, String> {
    let indices = |key: &str| -> Option<Vec<usize>> {
        let list = arguments.get(key)?.as_array()?;
        Some(list.iter().filter_map(Value::as_u64).map(|i| i as usize).collect())
    };
    let (wanted, unwanted) = (indices("files-wanted"), indices("files-unwanted"));
    let by_priority = [
        (FilePriority::High, indices("priority-high")),
        (FilePriority::Normal, indices("priority-normal")),
        (FilePriority::Low, indices("priority-low")),
    ];
    let priorities_given = by_priority.iter().any(|(_, list)| list.is_some());
    if wanted.is_none() && unwanted.is_none() && !priorities_given {
        return Ok(json!({}));
    }
    for entry in changeable(state, arguments)? {
        let Some(meta) = &entry.meta else {
            return Err(format!("{}: its files are not known yet", entry.name()));
        };
        let count = meta.info.files.len();
        let every =
            |list: &Vec<usize>| if list.is_empty() { (0..count).collect() } else { list.clone() };
        let mut chosen = entry.selection_mask();
        for (list, value) in [(&wanted, true), (&unwanted, false)] {
            for i in list.as_ref().map(every).unwrap_or_default() {
                if let Some(c) = chosen.get_mut(i) {
                    *c = value;
                }
            }
        }
        let mut priorities =
            entry.file_priorities.clone().unwrap_or_else(|| vec![FilePriority::Normal; count]);
        for (priority, list) in &by_priority {
            for i in list.as_ref().map(every).unwrap_or_default() {
                if let Some(p) = priorities.get_mut(i) {
                    *p = *priority;
                }
            }
        }
        let only = (!chosen.iter().all(|&c| c))
            .then(|| chosen.iter().enumerate().filter(|(_, &c)| c).map(|(i, _)| i).collect());
        let change = FilesChange { selected: Some(only), priorities: Some(Some(priorities)) };
        state.library.set_files(&entry.id.to_string(), change).await.map_err(message)?;
    }
    Ok(json!({}))
}

fn torrent_get(state: &AppState, arguments: &Value) -> Result<Value, String> {
    let fields: Vec<&str> = arguments
        .get("fields")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .ok_or("no fields specified")?;
    let torrents: Vec<Value> = selected(state, arguments)?
        .iter()
        .map(|entry| {
            let view = TorrentView::of(entry);
            let object: Map<String, Value> =
                fields.iter().filter_map(|&f| view.field(f).map(|v| (f.to_owned(), v))).collect();
            Value::Object(object)
        })
        .collect();
    let mut answer = json!({ "torrents": torrents });
    if arguments.get("ids").and_then(Value::as_str) == Some("recently-active") {
        answer["removed"] = json!([]);
    }
    Ok(answer)
}

/// Transmission's file priority numbers: -1 low, 0 normal, 1 high.
fn transmission_priority(priority: FilePriority) -> i8 {
    match priority {
        FilePriority::Low => -1,
        FilePriority::Normal => 0,
        FilePriority::High => 1,
    }
}

/// Transmission's torrent status numbers.
mod status {
    pub const STOPPED: u8 = 0;
    pub const CHECKING: u8 = 2;
    pub const DOWNLOAD_WAIT: u8 = 3;
    pub const DOWNLOADING: u8 = 4;
    pub const SEEDING: u8 = 6;
}

/// One entry with what Transmission's fields are made of.
struct TorrentView<'a> {
    entry: &'a Entry,
    snapshot: Snapshot,
}

impl<'a> TorrentView<'a> {
    fn of(entry: &'a Entry) -> Self {
        TorrentView { entry, snapshot: entry.snapshot() }
    }

    fn total(&self) -> u64 {
        self.entry.meta.as_ref().map_or(0, |m| m.info.total_length)
    }

    /// Bytes of the wanted files, and of those still missing.
    fn wanted_and_left(&self) -> (u64, u64) {
        let (wanted, done) = self.entry.wanted_and_done(&self.snapshot);
        (wanted, wanted - done)
    }

    fn status_number(&self) -> u8 {
        match &self.snapshot.state {
            EntryState::Paused | EntryState::Failed(_) => status::STOPPED,
            EntryState::Queued => status::DOWNLOAD_WAIT,
            EntryState::Running(phase) => match phase {
                Phase::Checking { .. } => status::CHECKING,
                Phase::FetchingMetadata | Phase::Downloading => status::DOWNLOADING,
                Phase::Seeding => status::SEEDING,
                Phase::Failed(_) | Phase::Stopped => status::STOPPED,
            },
        }
    }

    fn error_string(&self) -> Option<String> {
        match &self.snapshot.state {
            EntryState::Failed(e) | EntryState::Running(Phase::Failed(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn field(&self, name: &str) -> Option<Value> {
        let entry = self.entry;
        let stats = self.snapshot.status.as_ref().map(|s| &s.stats);
        let meta = entry.meta.as_ref();
        let (wanted, left) = self.wanted_and_left();
        let value = match name {
            "id" => json!(entry.id),
            "name" => json!(entry.name()),
            "hashString" => json!(entry.info_hash.to_hex()),
            "status" => json!(self.status_number()),
            // 3: a local error (Transmission's TR_STAT_LOCAL_ERROR).
            "error" => json!(if self.error_string().is_some() { 3 } else { 0 }),
            "errorString" => json!(self.error_string().unwrap_or_default()),
            "totalSize" => json!(self.total()),
            "sizeWhenDone" => json!(wanted),
            "leftUntilDone" => json!(left),
            "haveValid" => json!(wanted - left),
            "haveUnchecked" | "corruptEver" | "desiredAvailable" | "queuePosition" => json!(0),
            "percentDone" => json!(if wanted == 0 { 0.0 } else { (wanted - left) as f64 / wanted as f64 }),
            "percentComplete" => {
                json!(if self.total() == 0 { 0.0 } else { (wanted - left) as f64 / self.total() as f64 })
            }
            "metadataPercentComplete" => json!(if meta.is_some() { 1.0 } else { 0.0 }),
            "recheckProgress" => match self.snapshot.status.as_ref().map(|s| &s.phase) {
                Some(Phase::Checking { done, total }) if *total > 0 => {
                    json!(f64::from(*done) / f64::from(*total))
                }
                _ => json!(0.0),
            },
            "isFinished" => json!(false),
            "isStalled" => json!(false),
            "isPrivate" => json!(meta.is_some_and(|m| m.info.private)),
            "eta" => {
                let rate = stats.map_or(0, |s| s.download_rate);
                // -1: not available, -2: unknown (Transmission's own codes).
                json!(match (left, rate) {
                    (0, _) => -1,
                    (_, 0) => -2,
                    (left, rate) => (left / rate) as i64,
                })
            }
            "rateDownload" => json!(stats.map_or(0, |s| s.download_rate)),
            "rateUpload" => json!(stats.map_or(0, |s| s.upload_rate)),
            "uploadedEver" => json!(self.snapshot.uploaded),
            "downloadedEver" => json!(self.snapshot.downloaded),
            "uploadRatio" => {
                let down = self.snapshot.downloaded.max(wanted - left);
                json!(if down == 0 { -1.0 } else { self.snapshot.uploaded as f64 / down as f64 })
            }
            "peersConnected" => json!(stats.map_or(0, |s| s.peers)),
            "peersSendingToUs" => json!(stats.map_or(0, |s| s.seeds)),
            "peersGettingFromUs" => json!(stats.map_or(0, |s| s.peers.saturating_sub(s.seeds))),
            "webseedsSendingToUs" => json!(stats.map_or(0, |s| s.web_seeds)),
            "downloadDir" => json!(entry.dir),
            "addedDate" => json!(entry.added_at),
            "doneDate" => json!(entry.done_at.unwrap_or(0)),
            "activityDate" | "startDate" => json!(entry.added_at),
            "dateCreated" => json!(meta.and_then(|m| m.creation_date).unwrap_or(0)),
            "comment" => json!(meta.and_then(|m| m.comment.clone()).unwrap_or_default()),
            "creator" => json!(meta.and_then(|m| m.created_by.clone()).unwrap_or_default()),
            "magnetLink" => json!(match (&entry.magnet, meta) {
                (Some(magnet), _) => magnet.to_uri(),
                (None, Some(meta)) => meta.to_magnet().to_uri(),
                (None, None) => String::new(),
            }),
            "pieceCount" => json!(meta.map_or(0, |m| m.info.piece_hashes.len())),
            "pieceSize" => json!(meta.map_or(0, |m| m.info.piece_length)),
            "files" => Value::Array(self.files(|file, done| {
                json!({ "name": file.path.join("/"), "length": file.length, "bytesCompleted": done })
            })),
            "fileStats" => {
                let selected = entry.selection_mask();
                let mut index = 0;
                Value::Array(self.files(|_, done| {
                    let wanted = selected.get(index).copied().unwrap_or(false);
                    let priority = transmission_priority(self.priority_of(index));
                    index += 1;
                    json!({ "bytesCompleted": done, "wanted": wanted, "priority": priority })
                }))
            }
            "wanted" => json!(entry.selection_mask().into_iter().map(u8::from).collect::<Vec<_>>()),
            "priorities" => json!(meta.map_or_else(Vec::new, |m| (0..m.info.files.len())
                .map(|i| transmission_priority(self.priority_of(i)))
                .collect())),
            "labels" | "trackers" | "trackerStats" | "peers" | "webseeds" => json!([]),
            "bandwidthPriority" | "seedRatioMode" | "seedIdleMode" => json!(0),
            "downloadLimited" | "uploadLimited" => json!(false),
            "honorsSessionLimits" => json!(true),
            "seedRatioLimit" => json!(0.0),
            "secondsDownloading" | "secondsSeeding" => json!(0),
            _ => return None,
        };
        Some(value)
    }

    fn priority_of(&self, file: usize) -> FilePriority {
        let priorities = self.entry.file_priorities.as_ref();
        priorities.and_then(|p| p.get(file).copied()).unwrap_or_default()
    }

    /// Each file's entry, from its verified bytes (none when not known).
    fn files(
        &self,
        mut each: impl FnMut(&shoal_proto::metainfo::FileEntry, u64) -> Value,
    ) -> Vec<Value> {
        let Some(meta) = &self.entry.meta else { return Vec::new() };
        let done = self.entry.file_bytes_done(&self.snapshot).unwrap_or_default();
        let files = meta.info.files.iter().enumerate();
        files.map(|(i, file)| each(file, done.get(i).copied().unwrap_or(0))).collect()
    }
}
