//! The API's OpenAPI 3.1 description, served at `/api/openapi.json`. The tests of `shoal
//! serve` check that every field an answer carries is described here, and the other way round.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    for code in codes {
        let description = match *code {
            "400" => "A bad input (the reason is in `error`); nothing was added or changed",
            "401" => "Credentials required (--auth)",
            "403" => "Refused: a foreign Host or Origin, or the management API is off",
            "404" => "No such torrent",
            "409" => "A duplicate, or a torrent shared from the command line, or paused",
            "415" => "Neither JSON nor a .torrent",
            _ => "Error",
        };
        responses.insert(
            (*code).to_owned(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(responses)
}

fn with(mut responses: Value, code: &str, response: Value) -> Value {
    responses[code] = response;
    responses
}

pub fn openapi_document() -> Value {
    let torrent = json!({
        "type": "object",
        "required": ["id", "number", "info_hash", "name", "length", "shared", "magnet", "app_url", "dir", "state", "error", "bytes_done", "bytes_wanted", "progress", "pieces_have", "pieces_total", "uploaded", "downloaded", "upload_rate", "download_rate", "peers", "peers_by_source", "peers_by_transport", "resumed", "added_at", "done_at"],
        "properties": {
            "id": {"type": "string", "description": "The info hash in hex: the torrent's id in every route."},
            "number": {"type": "integer", "description": "Its Transmission RPC id (given at each start; routes take it too)."},
            "info_hash": {"type": "string"},
            "name": {"type": "string"},
            "length": {"type": ["integer", "null"], "description": "Bytes in all files; null until the metadata is known."},
            "shared": {"type": "boolean", "description": "Shared from the server's command line (not removable through the API)."},
            "magnet": {"type": ["string", "null"], "description": "A link that opens the torrent anywhere."},
            "app_url": {"type": ["string", "null"], "description": "The app playing a shared torrent in a browser tab."},
            "dir": {"type": "string", "description": "The folder its files are in."},
            "state": {"type": "string", "enum": ["paused", "queued", "metadata", "checking", "downloading", "seeding", "failed", "stopped"]},
            "error": {"type": ["string", "null"], "description": "Why it failed, when it did."},
            "bytes_done": {"type": "integer", "description": "Verified bytes of the selected files."},
            "bytes_wanted": {"type": "integer", "description": "Bytes of the selected files."},
            "progress": {"type": "number", "minimum": 0, "maximum": 1, "description": "bytes_done / bytes_wanted."},
            "pieces_have": {"type": "integer"},
            "pieces_total": {"type": "integer"},
            "uploaded": {"type": "integer", "description": "Payload bytes sent, over every run."},
            "downloaded": {"type": "integer", "description": "Payload bytes received, over every run."},
            "upload_rate": {"type": "integer", "description": "Bytes per second."},
            "download_rate": {"type": "integer", "description": "Bytes per second."},
            "peers": {"type": "integer"},
            "peers_by_source": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "tracker, dht, pex, lsd, webrtc, incoming, manual."},
            "peers_by_transport": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "tcp, utp, webrtc."},
            "resumed": {"type": ["boolean", "null"], "description": "Whether this start took the verified pieces from the resume record (true) or hashed the data (false); null while checking or not running."},
            "added_at": {"type": "integer", "description": "Seconds since the Unix epoch."},
            "done_at": {"type": ["integer", "null"], "description": "When every wanted piece was first verified."}
        }
    });
    let file = json!({
        "type": "object",
        "required": ["index", "path", "length", "bytes_done", "content_type", "selected", "priority", "stream_url", "player_url"],
        "properties": {
            "index": {"type": "integer", "description": "The file's index in the torrent (padding files are left out)."},
            "path": {"type": "string", "description": "The file's path in the torrent, /-separated."},
            "length": {"type": "integer"},
            "bytes_done": {"type": ["integer", "null"], "description": "Its verified bytes; null when not known (a torrent paused since the server started)."},
            "content_type": {"type": "string"},
            "selected": {"type": "boolean", "description": "Whether it is downloaded."},
            "priority": {"type": "string", "enum": ["low", "normal", "high"], "description": "How soon it is fetched beside the torrent's other files (a player's reads come first anyway)."},
            "stream_url": {"type": "string", "description": "The file over HTTP with Range: any player opens it while it downloads (what it reads is fetched first)."},
            "player_url": {"type": ["string", "null"], "description": "A player page for a shared file (what the embed snippet frames)."}
        }
    });
    let detail = json!({"allOf": [{"$ref": "#/components/schemas/Torrent"}, {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}}
    }]});
    let error = json!({
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}
    });
    let session = json!({
        "type": "object",
        "required": ["version", "download_dir", "state_dir", "max_active_downloads", "max_upload_rate", "max_download_rate"],
        "properties": {
            "version": {"type": "string"},
            "download_dir": {"type": "string"},
            "state_dir": {"type": ["string", "null"]},
            "max_active_downloads": {"type": "integer"},
            "max_upload_rate": {"type": ["integer", "null"], "description": "Bytes per second; null: no cap."},
            "max_download_rate": {"type": ["integer", "null"], "description": "Bytes per second; null: no cap."}
        }
    });
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The info hash in hex, or the torrent's number."});
    let one = json!({"description": "The torrent", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TorrentDetail"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Shoal server API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The library of `shoal serve`: what it shares and downloads, and how each torrent fares. Bound to loopback it needs nothing; elsewhere HTTP Basic (--auth). Requests from pages of other origins are refused."
        },
        "components": {
            "schemas": {"Torrent": torrent, "TorrentDetail": detail, "File": file, "Session": session, "Error": error},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}
        },
        "security": [{}, {"basic": []}],
        "paths": {
            "/api/torrents": {
                "get": {
                    "summary": "Every torrent of the library",
                    "responses": {"200": {"description": "The torrents", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["torrents"],
                        "properties": {"torrents": {"type": "array", "items": {"$ref": "#/components/schemas/Torrent"}}}
                    }}}}}
                },
                "post": {
                    "summary": "Add a torrent: a magnet, an info hash or an http(s) URL of a .torrent as JSON, or the .torrent itself",
                    "parameters": [
                        {"name": "dir", "in": "query", "schema": {"type": "string"}, "description": "With a .torrent body: its folder (absolute) [default: --download-dir]."},
                        {"name": "paused", "in": "query", "schema": {"type": "boolean"}, "description": "With a .torrent body: add it paused."}
                    ],
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {
                            "type": "object", "required": ["source"], "additionalProperties": false,
                            "properties": {
                                "source": {"type": "string", "description": "A magnet, an info hash (40 hex or 32 base32 digits) or an http(s) URL of a .torrent."},
                                "dir": {"type": "string", "description": "Its folder (absolute) [default: --download-dir]."},
                                "paused": {"type": "boolean"},
                                "files": {"type": "array", "items": {"type": "integer"}, "description": "The file indices to download [default: all]."}
                            }
                        }},
                        "application/x-bittorrent": {"schema": {"type": "string", "format": "binary"}}
                    }},
                    "responses": with(error_responses(&["400", "409", "415"]), "201", json!({
                        "description": "Added; Location names it",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TorrentDetail"}}}
                    }))
                }
            },
            "/api/torrents/{id}": {
                "parameters": [id],
                "get": {"summary": "One torrent and its files", "responses": with(error_responses(&["404"]), "200", one.clone())},
                "delete": {
                    "summary": "Stop and forget a torrent",
                    "parameters": [{"name": "delete_data", "in": "query", "schema": {"type": "boolean"}, "description": "Delete its files too."}],
                    "responses": with(error_responses(&["404", "409"]), "204", json!({"description": "Removed"}))
                }
            },
            "/api/torrents/{id}/pause": {
                "parameters": [id],
                "post": {"summary": "Stop it (its verified pieces are kept)", "responses": with(error_responses(&["404"]), "200", one.clone())}
            },
            "/api/torrents/{id}/resume": {
                "parameters": [id],
                "post": {"summary": "Start it again (or queue it)", "responses": with(error_responses(&["404"]), "200", one.clone())}
            },
            "/api/torrents/{id}/files": {
                "parameters": [id],
                "put": {
                    "summary": "Choose the files to download and how soon (what is left out stays as it is)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "selected": {"type": ["array", "null"], "items": {"type": "integer"}, "description": "File indices; null for every file."},
                            "priorities": {"type": ["array", "null"], "items": {"type": "string", "enum": ["low", "normal", "high"]}, "description": "One per file; null for all alike."}
                        }
                    }}}},
                    "responses": with(error_responses(&["400", "404", "409"]), "200", one)
                }
            },
            "/api/torrents/{id}/files/{index}/{name}": {
                "parameters": [id,
                    {"name": "index", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "The file's name (any: the index decides)."}],
                "get": {
                    "summary": "The file's bytes (a file's stream_url), with Range; reads wait for their pieces, which are fetched first",
                    "responses": with(error_responses(&["404", "409"]), "206", json!({"description": "The range asked for"}))
                }
            },
            "/api/session": {
                "get": {
                    "summary": "The server's settings",
                    "responses": {"200": {"description": "Settings", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}}}
                },
                "patch": {
                    "summary": "Change the limits until the next start (absent: unchanged; a rate of null: no cap)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "max_upload_rate": {"type": ["integer", "null"], "minimum": 1},
                            "max_download_rate": {"type": ["integer", "null"], "minimum": 1},
                            "max_active_downloads": {"type": "integer", "minimum": 1}
                        }
                    }}}},
                    "responses": with(error_responses(&["400"]), "200", json!({"description": "The settings now", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}}))
                }
            },
            "/api/events": {"get": {
                "summary": "Server-Sent Events: `torrents` with the whole list (as GET /api/torrents) at once and at every change, at most once a second",
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document (public)",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}
            }}
        }
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
        let routes = [
            ("/api/torrents", "get"),
            ("/api/torrents", "post"),
            ("/api/torrents/{id}", "get"),
            ("/api/torrents/{id}", "delete"),
            ("/api/torrents/{id}/pause", "post"),
            ("/api/torrents/{id}/resume", "post"),
            ("/api/torrents/{id}/files", "put"),
            ("/api/torrents/{id}/files/{index}/{name}", "get"),
            ("/api/session", "get"),
            ("/api/session", "patch"),
            ("/api/events", "get"),
            ("/api/openapi.json", "get"),
        ];
        for (path, method) in routes {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not described");
        }
    }
}
