//! `shoal serve`'s JSON API under `/api/`, described by `/api/openapi.json`: what the server
//! shares and how each torrent fares, for the app, scripts and other programs. Read-only for
//! now (the files given on the command line); a torrent's id is its info hash in hex.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use shoal::{Phase, TorrentHandle};

use super::{AppState, Shared};

/// The API's routes, merged into the app's router.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/torrents", get(list))
        .route("/api/torrents/{id}", get(one))
        .route("/api/openapi.json", get(openapi))
}

/// Every torrent the server shares, with its state.
async fn list(State(state): State<Arc<AppState>>) -> Response {
    let torrents: Vec<Value> =
        state.torrents().map(|(shared, handle)| summary(shared, handle)).collect();
    Json(json!({ "torrents": torrents })).into_response()
}

/// One torrent by id, with its files.
async fn one(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let id = id.to_ascii_lowercase();
    let Some((shared, handle)) =
        state.torrents().find(|(shared, _)| shared.meta.info_hash.to_hex() == id)
    else {
        return error(StatusCode::NOT_FOUND, &format!("no torrent with id {id:?}"));
    };
    let mut torrent = summary(shared, handle);
    let files: Vec<Value> = shared
        .meta
        .info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.padding)
        .map(|(index, file)| {
            let path = file.path.join("/");
            let embed = shared.embeds.iter().find(|e| e.path == path);
            json!({
                "index": index,
                "path": path,
                "length": file.length,
                // HTTP with Range, for any player or downloader.
                "streamUrl": embed.map(|e| e.http_url.clone()),
                "playerUrl": embed.map(|e| e.player_url.clone()),
            })
        })
        .collect();
    torrent["files"] = Value::Array(files);
    Json(torrent).into_response()
}

/// What a listing says of one torrent: what it is and how it fares now.
fn summary(shared: &Shared, handle: &TorrentHandle) -> Value {
    let status = handle.status();
    let s = &status.stats;
    let total = shared.meta.info.total_length;
    let done = s.bytes_left.map_or(0, |left| total.saturating_sub(left));
    json!({
        "id": shared.meta.info_hash.to_hex(),
        "infoHash": shared.meta.info_hash.to_hex(),
        "name": shared.meta.info.name,
        "length": total,
        "magnet": shared.magnet,
        "appUrl": shared.app_url,
        "phase": crate::output::phase_name(&status.phase),
        "error": match &status.phase { Phase::Failed(e) => Some(e.clone()), _ => None },
        "bytesDone": done,
        "progress": if total == 0 { 1.0 } else { done as f64 / total as f64 },
        "piecesHave": s.pieces_have,
        "piecesTotal": s.pieces_total,
        "uploaded": s.uploaded,
        "uploadRate": s.upload_rate,
        "downloadRate": s.download_rate,
        "peers": s.peers,
        "peersBySource": s.peers_by_source,
        "peersByTransport": status.peers_by_transport,
        "resumed": status.resumed,
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The API's OpenAPI 3.1 description.
async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

fn openapi_document() -> Value {
    let torrent = json!({
        "type": "object",
        "required": ["id", "infoHash", "name", "length", "magnet", "appUrl", "phase", "progress"],
        "properties": {
            "id": {"type": "string", "description": "The info hash in hex: the torrent's id in every route."},
            "infoHash": {"type": "string"},
            "name": {"type": "string"},
            "length": {"type": "integer", "description": "Bytes in all files."},
            "magnet": {"type": "string", "description": "A link that opens the torrent anywhere (with this server as tracker and web seed)."},
            "appUrl": {"type": "string", "description": "The app playing it in a browser tab."},
            "phase": {"type": "string", "enum": ["metadata", "checking", "downloading", "seeding", "failed", "stopped"]},
            "error": {"type": ["string", "null"], "description": "Why it failed, when it did."},
            "bytesDone": {"type": "integer"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "piecesHave": {"type": "integer"},
            "piecesTotal": {"type": "integer"},
            "uploaded": {"type": "integer", "description": "Payload bytes sent to peers since the start."},
            "uploadRate": {"type": "integer", "description": "Bytes per second."},
            "downloadRate": {"type": "integer", "description": "Bytes per second."},
            "peers": {"type": "integer"},
            "peersBySource": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "tracker, dht, pex, lsd, webrtc, incoming, manual."},
            "peersByTransport": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "tcp, utp, webrtc."},
            "resumed": {"type": ["boolean", "null"], "description": "Whether the start took the verified pieces from the resume record (true) or hashed the data (false); null while checking."}
        }
    });
    let file = json!({
        "type": "object",
        "required": ["index", "path", "length"],
        "properties": {
            "index": {"type": "integer"},
            "path": {"type": "string", "description": "The file's path in the torrent, /-separated."},
            "length": {"type": "integer"},
            "streamUrl": {"type": ["string", "null"], "description": "The file over HTTP, with Range: any player or downloader opens it."},
            "playerUrl": {"type": ["string", "null"], "description": "A player page for the file (what the embed snippet frames)."}
        }
    });
    let error = json!({
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Shoal server API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What `shoal serve` shares and how each torrent fares."
        },
        "paths": {
            "/api/torrents": {"get": {
                "summary": "Every torrent the server shares",
                "responses": {"200": {"description": "The torrents", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["torrents"],
                    "properties": {"torrents": {"type": "array", "items": {"$ref": "#/components/schemas/Torrent"}}}
                }}}}}
            }},
            "/api/torrents/{id}": {"get": {
                "summary": "One torrent and its files",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The info hash in hex."}],
                "responses": {
                    "200": {"description": "The torrent", "content": {"application/json": {"schema": {
                        "allOf": [{"$ref": "#/components/schemas/Torrent"}, {
                            "type": "object", "required": ["files"],
                            "properties": {"files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}}
                        }]
                    }}}},
                    "404": {"description": "No such torrent", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                }
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}
            }}
        },
        "components": {"schemas": {"Torrent": torrent, "File": file, "Error": error}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` names a schema the document defines, and every route the router serves is
    /// described.
    #[test]
    fn the_document_describes_every_route_and_resolves_its_references() {
        let doc = openapi_document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
        for path in ["/api/torrents", "/api/torrents/{id}", "/api/openapi.json"] {
            assert!(doc["paths"][path]["get"].is_object(), "{path} is not described");
        }
    }
}
