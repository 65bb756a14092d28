//! A torrent of the page's own files (`seedFiles`): read from JS, laid out as a torrent,
//! copied into wasm memory once, and hashed with SubtleCrypto (~3 × the speed of SHA-1 in
//! wasm here). Copying and hashing give the page a turn every [`HASH_SLICE`], so it stays
//! responsive while a large file is hashed.

use bytes::Bytes;
use js_sys::{Array, Reflect, Uint8Array};
use serde::Deserialize;
use shoal_proto::create::{TorrentBuilder, TorrentHasher};
use shoal_proto::PieceSizes;
use wasm_bindgen::prelude::*;

use crate::timer::PageTurns;

/// The most a tab shares: the files are held in wasm memory (32-bit, at most 4 GiB, and
/// the engine needs room besides).
const MAX_SEED_BYTES: u64 = 2 << 30;
/// Bytes of a shared file copied into wasm memory at a time.
const COPY_CHUNK: u32 = 8 << 20;
/// How long copying and hashing a new torrent's pieces runs before the page gets a turn.
pub const HASH_SLICE: std::time::Duration = std::time::Duration::from_millis(10);

/// `seedFiles`'s options: `{ pieceLength?: number, trackers?: string[] }`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedOptions {
    pub piece_length: Option<u32>,
    // Options are read leniently: `undefined` is as good as absent.
    pub trackers: Option<Vec<String>>,
}

impl SeedOptions {
    pub fn read(options: JsValue) -> Result<SeedOptions, JsError> {
        if options.is_undefined() || options.is_null() {
            return Ok(SeedOptions::default());
        }
        serde_wasm_bindgen::from_value(options)
            .map_err(|e| JsError::new(&format!("bad seed options: {e}")))
    }
}

/// One file to share: its path in the torrent, and its bytes, which stay in JS until they
/// are copied, once, into the torrent's memory.
pub struct SeedFile {
    path: Vec<String>,
    data: Uint8Array,
}

/// The files of `[{ path: "dir/name.ext", data: Uint8Array }]`, in order; at least one.
pub fn read_files(files: &Array) -> Result<Vec<SeedFile>, JsError> {
    let mut out = Vec::new();
    for file in files.iter() {
        let path = Reflect::get(&file, &"path".into())
            .ok()
            .and_then(|p| p.as_string())
            .ok_or_else(|| JsError::new("every file needs a path"))?;
        let data = Reflect::get(&file, &"data".into())
            .ok()
            .and_then(|d| d.dyn_into::<Uint8Array>().ok())
            .ok_or_else(|| JsError::new("every file needs its data as a Uint8Array"))?;
        let path = path.split('/').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        out.push(SeedFile { path, data });
    }
    if out.is_empty() {
        return Err(JsError::new("nothing to seed: no files"));
    }
    Ok(out)
}

/// The files' bytes together, if a tab can share that much.
pub fn total_length(files: &[SeedFile]) -> Result<u64, JsError> {
    let total: u64 = files.iter().map(|f| u64::from(f.data.length())).sum();
    if total > MAX_SEED_BYTES {
        return Err(JsError::new(&format!(
            "{} MiB is more than a tab can share from memory ({} MiB at most)",
            total >> 20,
            MAX_SEED_BYTES >> 20
        )));
    }
    Ok(total)
}

/// The torrent's layout (`name`, the files, the piece length and trackers), ready for its
/// piece hashes.
pub fn start_torrent(
    name: &str,
    files: &[SeedFile],
    total: u64,
    piece_length: Option<u32>,
    trackers: &[String],
) -> Result<TorrentHasher, JsError> {
    let single = files.len() == 1;
    let mut builder = match single {
        true => TorrentBuilder::single_file(name, total),
        false => TorrentBuilder::multi_file(name),
    }
    .map_err(|e| JsError::new(&format!("cannot make a torrent: {e}")))?;
    if !single {
        for SeedFile { path, data } in files {
            builder
                .add_file(path.clone(), u64::from(data.length()))
                .map_err(|e| JsError::new(&format!("cannot add {}: {e}", path.join("/"))))?;
        }
    }
    if let Some(len) = piece_length {
        builder = builder.piece_length(len);
    }
    builder = builder
        .trackers(trackers.iter().map(|t| vec![t.clone()]).collect())
        .created_by(concat!("Shoal web ", env!("CARGO_PKG_VERSION")));
    builder.start().map_err(|e| JsError::new(&format!("cannot make a torrent: {e}")))
}

/// The files' `total` bytes, in order, in one buffer of wasm memory.
pub async fn copy_into_memory(
    files: Vec<SeedFile>,
    total: u64,
    turns: &mut PageTurns,
) -> Result<Bytes, JsError> {
    // Bounded by MAX_SEED_BYTES, so the length fits wasm32's usize.
    let mut all = Vec::new();
    all.try_reserve_exact(total as usize).map_err(|_| {
        JsError::new(&format!("not enough memory in this tab to share {} MiB", total >> 20))
    })?;
    for SeedFile { data, .. } in files {
        let mut at = 0;
        while at < data.length() {
            let end = data.length().min(at + COPY_CHUNK);
            let start = all.len();
            all.resize(start + (end - at) as usize, 0);
            data.subarray(at, end).copy_to(&mut all[start..]);
            at = end;
            turns.take_if_due().await;
        }
    }
    Ok(Bytes::from(all))
}

/// `all` cut into pieces of `piece_length` (zero-copy), and each piece's SHA-1.
pub async fn hash_pieces(
    all: &Bytes,
    piece_length: u32,
    turns: &mut PageTurns,
) -> Result<(Vec<Bytes>, Vec<[u8; 20]>), JsValue> {
    let sizes = PieceSizes::new(piece_length, all.len() as u64);
    let pieces: Vec<Bytes> = (0u32..)
        .map_while(|piece| sizes.piece_range(piece))
        // Inside `all`, so both fit in usize.
        .map(|bytes| all.slice(bytes.start as usize..bytes.end as usize))
        .collect();
    let mut hashes = Vec::with_capacity(pieces.len());
    for piece in &pieces {
        hashes.push(crate::hash::sha1(piece).await?);
        turns.take_if_due().await;
    }
    Ok((pieces, hashes))
}
