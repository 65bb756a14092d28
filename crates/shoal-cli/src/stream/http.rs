//! The HTTP side of `shoal stream`: one URL per file with byte ranges, a playlist, a status
//! page and its JSON.
//!
//! A file's body is a [`shoal::FileStream`] seeked to the range's start: each response is one
//! reader of the torrent, so what a player asks for is what gets downloaded first, and a
//! client that hangs up drops its reader (and its deadlines) with the response body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shoal::TorrentHandle;
use shoal_proto::metainfo::Info;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::mime;
use super::page;
use super::range::{self, RangeError, RangeRequest};

/// Bytes handed to the socket per body chunk.
const BODY_CHUNK: usize = 64 * 1024;

/// A file as the server lists it.
#[derive(Clone, Debug)]
pub struct ServedFile {
    /// Index in the torrent (pad files are not listed, so indices may skip).
    pub index: usize,
    /// Path inside the torrent, `/`-separated.
    pub path: String,
    pub length: u64,
    pub content_type: &'static str,
    /// The URL path, e.g. `/files/3/movie.mp4`.
    pub url_path: String,
}

impl ServedFile {
    /// The files of a torrent worth serving (every file but BEP 47 padding).
    pub fn list(info: &Info) -> Vec<ServedFile> {
        info.files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.padding)
            .map(|(index, f)| {
                let name = f.path.last().map_or("file", String::as_str);
                ServedFile {
                    index,
                    path: f.path.join("/"),
                    length: f.length,
                    content_type: mime::content_type(name),
                    url_path: format!(
                        "/files/{index}/{}",
                        shoal_proto::percent::encode(name.as_bytes())
                    ),
                }
            })
            .collect()
    }

    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub handle: TorrentHandle,
    pub files: Arc<Vec<ServedFile>>,
    /// How long one read of a body may wait for its data before the response is cut off.
    pub read_timeout: Option<Duration>,
    /// The session's DHT node and port mapping, for the status.
    pub network: page::Network,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/status", get(status_json))
        .route("/playlist.m3u", get(playlist))
        .route("/files/{index}", get(serve_file_by_index))
        .route("/files/{index}/{*name}", get(serve_file))
        .fallback(|| async { not_found("no such page") })
        .with_state(state)
}

async fn status_page(State(app): State<AppState>) -> Html<String> {
    Html(page::status_html(&app.handle, &app.files))
}

async fn status_json(State(app): State<AppState>) -> Response {
    let mut response =
        axum::Json(page::status_json(&app.handle, &app.files, &app.network)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn playlist(State(app): State<AppState>, headers: HeaderMap) -> Response {
    // Absolute URLs, as players want them, for whatever address the client used to reach us.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let body = page::m3u(&format!("http://{host}"), &app.files);
    ([(header::CONTENT_TYPE, "audio/x-mpegurl; charset=utf-8")], body).into_response()
}

async fn serve_file_by_index(
    state: State<AppState>,
    Path(index): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(state, &index, method, headers).await
}

async fn serve_file(
    state: State<AppState>,
    Path((index, _name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(state, &index, method, headers).await
}

async fn serve(
    State(app): State<AppState>,
    index: &str,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(file) =
        index.parse::<usize>().ok().and_then(|i| app.files.iter().find(|f| f.index == i))
    else {
        return not_found("no such file in this torrent");
    };
    respond(&app.handle, file, app.read_timeout, &method, &headers).await
}

/// Answers a request for `file` of the torrent `handle` streams: its bytes (or the range
/// asked for) as they arrive, each read waiting at most `read_timeout`. `shoal serve`'s
/// library answers its files' `stream_url`s with it too.
pub async fn respond(
    handle: &TorrentHandle,
    file: &ServedFile,
    read_timeout: Option<Duration>,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{}-{}\"", handle.info_hash().to_hex(), file.index);
    let range_header = headers.get(header::RANGE).map(|v| v.to_str().unwrap_or("\u{0}"));
    // If-Range with another validator: the client's partial copy is stale, send it all.
    let if_range_stale = headers
        .get(header::IF_RANGE)
        .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != etag));
    let requested = if if_range_stale {
        Ok(RangeRequest::Full)
    } else {
        range::parse(range_header, file.length)
    };
    let (status, start, count) = match requested {
        Ok(RangeRequest::Full) => (StatusCode::OK, 0, file.length),
        Ok(RangeRequest::Partial { start, end }) => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Err(RangeError::Unsatisfiable) => {
            let mut response =
                (StatusCode::RANGE_NOT_SATISFIABLE, "the range is outside the file\n")
                    .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.length)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
        Err(e @ RangeError::Malformed(_)) => {
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };

    let mut response_headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            response_headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, file.content_type);
    set(header::ACCEPT_RANGES, "bytes");
    set(header::CONTENT_LENGTH, &count.to_string());
    set(header::ETAG, &etag);
    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(header::ACCESS_CONTROL_EXPOSE_HEADERS, "Content-Range, Content-Length, Accept-Ranges");
    set(
        header::CONTENT_DISPOSITION,
        &format!(
            "inline; filename*=UTF-8''{}",
            shoal_proto::percent::encode(file.name().as_bytes())
        ),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{}", start, start + count - 1, file.length),
        );
    }

    if *method == Method::HEAD || count == 0 {
        return (status, response_headers, Body::empty()).into_response();
    }
    let mut stream = match handle.open_file(file.index).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    stream.set_timeout(read_timeout);
    if let Err(e) = stream.seek(std::io::SeekFrom::Start(start)).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    let body = Body::from_stream(ReaderStream::with_capacity(stream.take(count), BODY_CHUNK));
    (status, response_headers, body).into_response()
}

fn not_found(what: &'static str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}
