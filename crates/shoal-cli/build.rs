//! Embeds the web app (the repository's `web/` folder, `web/pkg` with the browser engine
//! included once scripts/build-web.sh has built it) into the binary for `shoal serve`.
//!
//! Writes `$OUT_DIR/web_assets.rs`: `ASSETS`, a list of [`Asset`]s sorted by path, each with
//! its bytes, a validator (`etag`) and, for text and wasm, its brotli and gzip encodings made
//! here once (brotli's best setting takes seconds for the engine: too slow for every start of
//! `shoal serve`, free at build time). A build before web/pkg exists embeds the app without
//! its engine; `shoal serve` then says how to build it.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// File types worth compressing (the rest, images, are compressed already).
const COMPRESSIBLE: &[&str] = &["html", "js", "mjs", "css", "wasm", "json", "svg", "ts", "txt"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    files.sort();
    let mut out = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, (rel, abs)) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", abs.display());
        let bytes = std::fs::read(abs).expect("reading a web asset");
        let digest = Sha1::digest(&bytes);
        let etag: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        let extension = rel.rsplit('.').next().unwrap_or_default();
        let (mut br, mut gzip) = (None, None);
        if COMPRESSIBLE.contains(&extension) && bytes.len() > 256 {
            br = smaller(&out_dir, &format!("asset{i}.br"), &bytes, brotli_best(&bytes));
            gzip = smaller(&out_dir, &format!("asset{i}.gz"), &bytes, gzip_best(&bytes));
        }
        let include = |p: &Option<PathBuf>| match p {
            Some(p) => format!("Some(include_bytes!({:?}))", p.display().to_string()),
            None => "None".to_owned(),
        };
        out.push_str(&format!(
            "    Asset {{ path: {rel:?}, bytes: include_bytes!({:?}), etag: \"\\\"{etag}\\\"\", \
             br: {}, gzip: {} }},\n",
            abs.display().to_string(),
            include(&br),
            include(&gzip),
        ));
    }
    out.push_str("];\n");
    std::fs::write(out_dir.join("web_assets.rs"), out).expect("writing web_assets.rs");
}

/// Writes `encoded` to `name` in `dir` if it saves at least a tenth of `plain`.
fn smaller(dir: &Path, name: &str, plain: &[u8], encoded: Vec<u8>) -> Option<PathBuf> {
    if encoded.len() * 10 > plain.len() * 9 {
        return None;
    }
    let path = dir.join(name);
    std::fs::write(&path, encoded).expect("writing a compressed web asset");
    Some(path)
}

fn brotli_best(bytes: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        size_hint: bytes.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("brotli into memory");
    out
}

fn gzip_best(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            let abs = path.canonicalize().unwrap_or(path);
            files.push((rel, abs));
        }
    }
}
