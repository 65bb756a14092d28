//! `shoal serve`'s JSON API under `/api/`, described by `/api/openapi.json`: the library's
//! torrents and how each fares, adding and removing them, pausing, file selection, each
//! file's `stream_url`, and progress as Server-Sent Events. A torrent's id is its info hash
//! in hex (its `number`, the Transmission RPC id, works too). Guarded by `access.rs`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal::rate::MIN_RATE;
use shoal::{Phase, TorrentSource};
use shoal_proto::metainfo::Metainfo;

use super::library::{Entry, FilesChange, LibraryError, NewTorrent, Origin, State as EntryState};
use super::AppState;
use crate::stream::http::{respond, ServedFile};

pub mod openapi;

/// The largest request body: a .torrent of a few thousand files is a few MB.
const MAX_BODY: usize = 32 << 20;
/// How often `/api/events` sends the list at most.
const EVENTS_EVERY: Duration = Duration::from_millis(1000);

/// The management routes (guarded by the caller).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/torrents", get(list).post(add))
        .route("/api/torrents/{id}", get(one).delete(remove))
        .route("/api/torrents/{id}/pause", post(pause))
        .route("/api/torrents/{id}/resume", post(resume))
        .route("/api/torrents/{id}/files", put(select_files))
        .route("/api/torrents/{id}/files/{index}/{*name}", get(stream_file).head(stream_file))
        .route("/api/session", get(session).patch(change_session))
        .route("/api/events", get(events))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The routes anyone may read.
pub(super) fn public_routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/openapi.json", get(|| async { Json(openapi::openapi_document()) }))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

impl IntoResponse for LibraryError {
    fn into_response(self) -> Response {
        let status = match &self {
            LibraryError::NotFound(_) => StatusCode::NOT_FOUND,
            LibraryError::Duplicate { .. } | LibraryError::SharedOnCommandLine => {
                StatusCode::CONFLICT
            }
            LibraryError::BadInput(_) => StatusCode::BAD_REQUEST,
            LibraryError::Full => StatusCode::INSUFFICIENT_STORAGE,
            LibraryError::Engine(_) | LibraryError::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, &self.to_string())
    }
}

/// Every torrent of the library, with its state.
async fn list(State(state): State<Arc<AppState>>) -> Response {
    let body = list_json(&state);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"torrents": [...]}`, written straight from the entries (no copy of the library, no
/// intermediate JSON tree: a listing is what clients poll).
fn list_json(state: &AppState) -> String {
    #[derive(Serialize)]
    struct List<'a> {
        torrents: Vec<Summary<'a>>,
    }
    state.library.with_entries(|entries| {
        let torrents = entries.iter().map(|e| summary(state, e)).collect();
        serde_json::to_string(&List { torrents }).unwrap_or_else(|_| "{\"torrents\":[]}".into())
    })
}

/// One torrent by id, with its files.
async fn one(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    answer_one(&state, &id, &headers)
}

fn answer_one(state: &AppState, id: &str, headers: &HeaderMap) -> Response {
    match state.library.find(id) {
        Ok(entry) => Json(detail(state, &entry, &base_of(state, headers))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The server's URL as this request named it (its Host passed the guard: one of ours), so a
/// `stream_url` opens on the origin the client uses, with the credentials it has there.
fn base_of(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let scheme = state.base.split_once("://").map_or("http", |(scheme, _)| scheme);
    match host.filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic())) {
        Some(host) => format!("{scheme}://{host}"),
        None => state.base.clone(),
    }
}

/// What `POST /api/torrents` takes as JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    /// A magnet, an info hash (hex or base32), or an http(s) URL of a .torrent.
    source: String,
    dir: Option<PathBuf>,
    #[serde(default)]
    paused: bool,
    /// File indices to download [default: all].
    files: Option<Vec<usize>>,
}

/// The query of `POST /api/torrents` with a .torrent body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddQuery {
    dir: Option<PathBuf>,
    #[serde(default)]
    paused: bool,
}

/// Adds a torrent: a JSON body naming its source, or the .torrent's bytes
/// (`application/x-bittorrent`). `201` with the torrent; nothing is added for a bad input.
async fn add(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AddQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let new =
        match kind.as_str() {
            "application/json" => {
                let body: AddBody = match serde_json::from_slice(&body) {
                    Ok(body) => body,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
                };
                let source = match resolve_source(&body.source).await {
                    Ok(source) => source,
                    Err(e) => return e.into_response(),
                };
                NewTorrent { source, dir: body.dir, paused: body.paused, only_files: body.files }
            }
            "application/x-bittorrent" | "application/octet-stream" => {
                let meta = match parse_torrent(&body) {
                    Ok(meta) => meta,
                    Err(e) => return e.into_response(),
                };
                let source = TorrentSource::Metainfo(Box::new(meta));
                NewTorrent { source, dir: query.dir, paused: query.paused, only_files: None }
            }
            _ => return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send application/json ({\"source\": magnet, info hash or URL}) or the .torrent \
                 as application/x-bittorrent",
            ),
        };
    let library = state.library.clone();
    match tokio::task::spawn_blocking(move || library.add(new)).await {
        Ok(Ok(entry)) => {
            let base = base_of(&state, &headers);
            let mut response =
                (StatusCode::CREATED, Json(detail(&state, &entry, &base))).into_response();
            let location = format!("/api/torrents/{}", entry.info_hash.to_hex());
            if let Ok(v) = location.parse() {
                response.headers_mut().insert(header::LOCATION, v);
            }
            response
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A .torrent's bytes, parsed; the parser's reason when they are not one.
pub fn parse_torrent(bytes: &[u8]) -> Result<Metainfo, LibraryError> {
    Metainfo::from_bytes(bytes)
        .map_err(|e| LibraryError::BadInput(format!("not a usable .torrent: {e}")))
}

/// What a source string names: a magnet, a bare info hash (40 hex or 32 base32 digits), or
/// an http(s) URL of a .torrent (fetched, bounded), read as the command line reads them
/// (`transfer::resolve_source`). Paths on the server's disk are not accepted: a client names
/// what it has, not what the server can read.
pub async fn resolve_source(input: &str) -> Result<TorrentSource, LibraryError> {
    let input = input.trim();
    let scheme = |s: &str| input.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
    let bare_hash =
        matches!(input.len(), 32 | 40) && input.bytes().all(|b| b.is_ascii_alphanumeric());
    let named = if scheme("magnet:") || scheme("http://") || scheme("https://") {
        input.to_owned()
    } else if bare_hash {
        format!("magnet:?xt=urn:btih:{input}")
    } else {
        return Err(LibraryError::BadInput(format!(
            "{input:?} is not a magnet, an info hash or an http(s) URL of a .torrent"
        )));
    };
    crate::transfer::resolve_source(&named)
        .await
        .map_err(|e| LibraryError::BadInput(crate::output::error_chain(&e)))
}

/// `DELETE /api/torrents/{id}?delete_data=true`: forgets the torrent (and its files).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: bool,
}

async fn remove(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Response {
    match state.library.remove(&id, query.delete_data).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match state.library.pause(&id).await {
        Ok(()) => answer_one(&state, &id, &headers),
        Err(e) => e.into_response(),
    }
}

async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match state.library.resume(&id) {
        Ok(()) => answer_one(&state, &id, &headers),
        Err(e) => e.into_response(),
    }
}

/// `PUT /api/torrents/{id}/files`: `selected` (indices, or `null` for every file) and/or
/// `priorities` (one of low, normal, high per file, or `null` for all alike).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesBody {
    #[serde(default, deserialize_with = "present")]
    selected: Option<Option<Vec<usize>>>,
    #[serde(default, deserialize_with = "present")]
    priorities: Option<Option<Vec<shoal::FilePriority>>>,
}

/// A field that is there (`Some`, perhaps `null`) or not (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn select_files(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<FilesBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let change = FilesChange { selected: body.selected, priorities: body.priorities };
    match state.library.set_files(&id, change).await {
        Ok(()) => answer_one(&state, &id, &headers),
        Err(e) => e.into_response(),
    }
}

/// A file of a library torrent over HTTP with ranges and the streaming deadlines of `shoal
/// stream`: what a player opens while the torrent downloads.
async fn stream_file(
    State(state): State<Arc<AppState>>,
    Path((id, index, _name)): Path<(String, usize, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let entry = match state.library.find(&id) {
        Ok(entry) => entry,
        Err(e) => return e.into_response(),
    };
    let Some(meta) = &entry.meta else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the torrent's metadata is on the way");
    };
    let Some(file) = ServedFile::list(&meta.info).into_iter().find(|f| f.index == index) else {
        return error(StatusCode::NOT_FOUND, "no such file in the torrent");
    };
    let Some(handle) = &entry.handle else {
        return error(StatusCode::CONFLICT, "the torrent is paused or queued; resume it first");
    };
    respond(handle, &file, Some(crate::stream::READ_TIMEOUT), &method, &headers).await
}

/// The server's settings.
async fn session(State(state): State<Arc<AppState>>) -> Response {
    Json(session_json(&state)).into_response()
}

fn session_json(state: &AppState) -> Value {
    let library = &state.library;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "download_dir": library.download_dir(),
        "state_dir": library.state_dir(),
        "max_active_downloads": library.max_active_downloads(),
        "max_upload_rate": state.upload_limit.rate(),
        "max_download_rate": state.download_limit.rate(),
    })
}

/// `PATCH /api/session`: the limits to change (a rate of `null` lifts that cap); the others
/// stay as they are. Until the next start: the command line sets them at start.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionChange {
    #[serde(default, deserialize_with = "present")]
    max_upload_rate: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_download_rate: Option<Option<u64>>,
    max_active_downloads: Option<usize>,
}

async fn change_session(
    State(state): State<Arc<AppState>>,
    body: Result<Json<SessionChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(change) = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let too_low = |rate: Option<Option<u64>>| rate.flatten().is_some_and(|r| r < MIN_RATE);
    if too_low(change.max_upload_rate) || too_low(change.max_download_rate) {
        let message = format!("a rate is at least {MIN_RATE} bytes per second; null for no cap");
        return error(StatusCode::BAD_REQUEST, &message);
    }
    if change.max_active_downloads == Some(0) {
        return error(StatusCode::BAD_REQUEST, "max_active_downloads must be at least 1");
    }
    if let Some(rate) = change.max_upload_rate {
        state.upload_limit.set_rate(rate);
    }
    if let Some(rate) = change.max_download_rate {
        state.download_limit.set_rate(rate);
    }
    if let Some(n) = change.max_active_downloads {
        state.library.set_max_active_downloads(n);
    }
    Json(session_json(&state)).into_response()
}

/// Server-Sent Events: a `torrents` event with the whole list at once, then at every change
/// (at most one a second).
async fn events(State(state): State<Arc<AppState>>) -> Response {
    let changes = state.library.subscribe();
    let stream = futures_util::stream::unfold(
        (state, changes, true),
        |(state, mut changes, first)| async move {
            if !first {
                let next = async {
                    tokio::time::sleep(EVENTS_EVERY).await;
                    changes.changed().await
                };
                // The stream ends with the server, which would otherwise wait for it.
                tokio::select! {
                    changed = next => changed.ok()?,
                    () = crate::signals::wait_for_signal() => return None,
                }
            }
            changes.borrow_and_update();
            let event = Event::default().event("torrents").data(list_json(&state));
            Some((Ok::<_, Infallible>(event), (state, changes, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// How a listing shows one torrent (the OpenAPI document's `Torrent`).
#[derive(Serialize)]
struct Summary<'a> {
    id: String,
    number: u32,
    info_hash: String,
    name: String,
    length: Option<u64>,
    shared: bool,
    magnet: Option<String>,
    app_url: Option<&'a str>,
    dir: &'a std::path::Path,
    state: &'static str,
    error: Option<String>,
    bytes_done: u64,
    bytes_wanted: u64,
    progress: f64,
    pieces_have: u32,
    pieces_total: usize,
    uploaded: u64,
    downloaded: u64,
    upload_rate: u64,
    download_rate: u64,
    peers: usize,
    peers_by_source: BTreeMap<&'static str, usize>,
    peers_by_transport: BTreeMap<&'static str, usize>,
    resumed: Option<bool>,
    added_at: u64,
    done_at: Option<u64>,
}

fn summary<'a>(state: &'a AppState, entry: &'a Entry) -> Summary<'a> {
    let snapshot = entry.snapshot();
    let total = entry.meta.as_ref().map(|m| m.info.total_length);
    let (wanted, done) = entry.wanted_and_done(&snapshot);
    let (state_name, error) = match &snapshot.state {
        EntryState::Paused => ("paused", None),
        EntryState::Queued => ("queued", None),
        EntryState::Failed(e) => ("failed", Some(e.clone())),
        EntryState::Running(Phase::Failed(e)) => ("failed", Some(e.clone())),
        EntryState::Running(phase) => (crate::output::phase_name(phase), None),
    };
    let shared = match entry.origin {
        Origin::Shared(index) => state.shared.get(index),
        Origin::Added => None,
    };
    let magnet = match (shared, &entry.meta, &entry.magnet) {
        (Some(shared), _, _) => Some(shared.magnet.clone()),
        (None, _, Some(magnet)) => Some(magnet.to_uri()),
        (None, Some(meta), None) => Some(meta.to_magnet().to_uri()),
        (None, None, None) => None,
    };
    let (uploaded, downloaded) = (snapshot.uploaded, snapshot.downloaded);
    let status = snapshot.status;
    let stats = status.as_ref().map(|s| &s.stats);
    Summary {
        id: entry.info_hash.to_hex(),
        number: entry.id,
        info_hash: entry.info_hash.to_hex(),
        name: entry.name(),
        length: total,
        shared: shared.is_some(),
        magnet,
        app_url: shared.map(|s| s.app_url.as_str()),
        dir: &entry.dir,
        state: state_name,
        error,
        bytes_done: done,
        bytes_wanted: wanted,
        progress: match (total, wanted) {
            (None, _) => 0.0,
            (Some(_), 0) => 1.0,
            (Some(_), wanted) => done as f64 / wanted as f64,
        },
        pieces_have: stats.map_or(0, |s| s.pieces_have),
        pieces_total: entry.meta.as_ref().map_or(0, |m| m.info.piece_hashes.len()),
        uploaded,
        downloaded,
        upload_rate: stats.map_or(0, |s| s.upload_rate),
        download_rate: stats.map_or(0, |s| s.download_rate),
        peers: stats.map_or(0, |s| s.peers),
        resumed: status.as_ref().and_then(|s| s.resumed),
        peers_by_source: status
            .as_ref()
            .map(|s| s.stats.peers_by_source.clone())
            .unwrap_or_default(),
        peers_by_transport: status.map(|s| s.peers_by_transport).unwrap_or_default(),
        added_at: entry.added_at,
        done_at: entry.done_at,
    }
}

/// A torrent with its files.
fn detail(state: &AppState, entry: &Entry, base: &str) -> Value {
    let mut torrent = serde_json::to_value(summary(state, entry)).unwrap_or_default();
    let shared = match entry.origin {
        Origin::Shared(index) => state.shared.get(index),
        Origin::Added => None,
    };
    let bytes_done = entry.file_bytes_done(&entry.snapshot());
    let selection = entry.selection_mask();
    let files: Vec<Value> = entry.meta.as_ref().map_or_else(Vec::new, |meta| {
        ServedFile::list(&meta.info)
            .into_iter()
            .map(|file| {
                let embed = shared.and_then(|s| s.embeds.iter().find(|e| e.path == file.path));
                let selected = selection.get(file.index).copied().unwrap_or(false);
                let priority = entry
                    .file_priorities
                    .as_ref()
                    .and_then(|p| p.get(file.index).copied())
                    .unwrap_or_default();
                // A shared file is whole on disk: the web seed's route serves it. A library
                // torrent's file streams from the engine, fetched first where the player reads.
                let stream_url = match embed {
                    Some(e) => e.http_url.clone(),
                    None => {
                        format!("{base}/api/torrents/{}{}", entry.info_hash.to_hex(), file.url_path)
                    }
                };
                json!({
                    "index": file.index,
                    "path": file.path,
                    "length": file.length,
                    "bytes_done": bytes_done.as_ref().and_then(|d| d.get(file.index)),
                    "content_type": file.content_type,
                    "selected": selected,
                    "priority": priority,
                    "stream_url": stream_url,
                    "player_url": embed.map(|e| e.player_url.clone()),
                })
            })
            .collect()
    });
    torrent["files"] = Value::Array(files);
    torrent
}
