//! `shoal create`: walk a file or folder, hash it, write the .torrent.
//!
//! Files are listed depth first with each folder's entries sorted by name, so the same folder
//! always gives the same torrent. Nothing is skipped (hidden files included); symbolic links
//! are followed only while they stay inside the folder being shared.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use shoal_proto::create::TorrentBuilder;
use shoal_proto::metainfo::{Metainfo, MAX_FILES, MAX_PATH_DEPTH};

use shoal::resume::now_ns;

use crate::made::MadeRecord;
use crate::output::{byte_progress, human_size, print_json, CliError, Context, Table};
use crate::CreateArgs;

/// What made a torrent, in its `created by`.
const CREATED_BY: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"));

/// One file to hash: its path inside the torrent and where to read it.
struct SourceFile {
    components: Vec<String>,
    disk_path: PathBuf,
    length: u64,
}

pub fn run(args: CreateArgs) -> Result<(), CliError> {
    let made = make_torrent(&args)?;
    let output =
        args.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}.torrent", made.name)));
    refuse_output_inside_content(&output, &made.sources)?;
    // Parsing our own output checks it and gives the info hash as any client will see it.
    let metainfo =
        Metainfo::from_bytes(&made.torrent).context("the torrent we made does not parse")?;
    fs::write(&output, &made.torrent)
        .with_context(|| format!("cannot write {}", output.display()))?;
    report(&metainfo, &output, args.json)
}

/// A torrent made from a file or folder.
pub struct MadeTorrent {
    pub torrent: Vec<u8>,
    pub name: String,
    sources: Vec<SourceFile>,
}

/// A torrent made in memory for a file or folder that is shared where it lies, and the
/// folder its content is then read from (the path's parent).
pub struct SharedInPlace {
    pub meta: Metainfo,
    pub root: PathBuf,
}

/// Makes a torrent for `path` with these trackers and web seeds, hashing on a blocking
/// thread (unless `remember`, the resume folder, holds the one made last time of the same
/// unchanged files: `made.rs`); `shoal seed PATH` and `shoal serve` share files this way.
pub async fn share_in_place(
    path: &Path,
    trackers: Vec<String>,
    web_seeds: Vec<String>,
    piece_size: Option<u32>,
    json: bool,
    remember: Option<PathBuf>,
) -> Result<SharedInPlace, CliError> {
    let create = CreateArgs {
        path: path.to_path_buf(),
        output: None,
        trackers,
        web_seeds,
        piece_size,
        name: None,
        comment: None,
        private: false,
        json,
    };
    let (meta, remembered) =
        tokio::task::spawn_blocking(move || make_remembered(&create, remember.as_deref()))
            .await
            .map_err(|e| CliError::with_source("hashing stopped", e))??;
    if json {
        let line = json!({
            "event": "made",
            "path": path.display().to_string(),
            "info_hash": meta.info_hash.to_hex(),
            "from": if remembered { "record" } else { "hash" },
        });
        println!("{line}");
    }
    let canonical =
        fs::canonicalize(path).with_context(|| format!("cannot open {}", path.display()))?;
    let root = canonical.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(SharedInPlace { meta, root })
}

/// Walks and hashes `args.path` into a .torrent (in memory).
pub fn make_torrent(args: &CreateArgs) -> Result<MadeTorrent, CliError> {
    let (builder, sources, name) = list_sources(args)?;
    hash_sources(args, builder, sources, name)
}

/// The torrent of `args.path` as made last time for the same files, unchanged since, when
/// `remember` (the resume folder) holds it; made (hashed) and remembered otherwise.
/// The flag says whether it was taken from the record.
fn make_remembered(
    args: &CreateArgs,
    remember: Option<&Path>,
) -> Result<(Metainfo, bool), CliError> {
    let parse = |made: &MadeTorrent| {
        Metainfo::from_bytes(&made.torrent).context("the torrent we made does not parse")
    };
    let (builder, sources, name) = list_sources(args)?;
    let Some(dir) = remember else {
        return Ok((parse(&hash_sources(args, builder, sources, name)?)?, false));
    };
    let canonical = fs::canonicalize(&args.path)
        .with_context(|| format!("cannot open {}", args.path.display()))?;
    let record = MadeRecord::new(dir, &canonical, &name, args.piece_size);
    let disk: Vec<PathBuf> = sources.iter().map(|s| s.disk_path.clone()).collect();
    // Stamped before the files are read: one that changes while it is hashed shows a later
    // time at the next start.
    let stamped_ns = now_ns();
    let stamps = MadeRecord::stamps(&disk);
    if let Some(meta) = record.load(&stamps).and_then(|info| Metainfo::from_info_bytes(&info).ok())
    {
        let meta = Metainfo {
            trackers: args.trackers.iter().map(|t| vec![t.clone()]).collect(),
            web_seeds: args.web_seeds.clone(),
            created_by: Some(CREATED_BY.to_owned()),
            ..meta
        };
        return Ok((meta, true));
    }
    let meta = parse(&hash_sources(args, builder, sources, name)?)?;
    record.save(stamps, stamped_ns, &meta.info_bytes);
    Ok((meta, false))
}

/// What `args.path` shares, in the torrent's order, and the builder of its torrent.
fn list_sources(args: &CreateArgs) -> Result<(TorrentBuilder, Vec<SourceFile>, String), CliError> {
    let root = fs::canonicalize(&args.path)
        .with_context(|| format!("cannot open {}", args.path.display()))?;
    let root_meta =
        fs::metadata(&root).with_context(|| format!("cannot open {}", args.path.display()))?;
    let default_name = root.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        CliError::msg(format!("{} has no usable UTF-8 name; pass --name", root.display()))
    })?;
    let name = args.name.clone().unwrap_or_else(|| default_name.to_owned());

    let (builder, sources) = if root_meta.is_file() {
        let builder = TorrentBuilder::single_file(&name, root_meta.len())
            .with_context(|| format!("cannot use the name {name:?}"))?;
        let source =
            SourceFile { components: Vec::new(), disk_path: root.clone(), length: root_meta.len() };
        (builder, vec![source])
    } else if root_meta.is_dir() {
        let mut sources = Vec::new();
        let mut ancestors = HashSet::from([root.clone()]);
        walk(&root, &root, &mut Vec::new(), &mut ancestors, &mut sources)?;
        let mut builder = TorrentBuilder::multi_file(&name)
            .with_context(|| format!("cannot use the name {name:?}"))?;
        for source in &sources {
            builder
                .add_file(source.components.clone(), source.length)
                .with_context(|| format!("cannot add {}", source.disk_path.display()))?;
        }
        (builder, sources)
    } else {
        return Err(CliError::msg(format!(
            "{} is neither a file nor a folder",
            args.path.display()
        )));
    };

    Ok((builder, sources, name))
}

/// Hashes `sources` into the torrent `builder` describes, with `args`' settings.
fn hash_sources(
    args: &CreateArgs,
    mut builder: TorrentBuilder,
    sources: Vec<SourceFile>,
    name: String,
) -> Result<MadeTorrent, CliError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    builder = builder
        .trackers(args.trackers.iter().map(|t| vec![t.clone()]).collect())
        .web_seeds(args.web_seeds.clone())
        .created_by(CREATED_BY)
        .creation_date(now)
        .private(args.private);
    if let Some(comment) = &args.comment {
        builder = builder.comment(comment.clone());
    }
    if let Some(piece_size) = args.piece_size {
        builder = builder.piece_length(piece_size);
    }
    let torrent = hash_files(builder, &sources, args.json)?;
    Ok(MadeTorrent { torrent, name, sources })
}

/// Adds the files under `dir` to `out`, sorted by name, depth first.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &mut Vec<String>,
    ancestors: &mut HashSet<PathBuf>,
    out: &mut Vec<SourceFile>,
) -> Result<(), CliError> {
    if prefix.len() >= MAX_PATH_DEPTH {
        return Err(CliError::msg(format!(
            "{} is nested more than {MAX_PATH_DEPTH} folders deep",
            dir.display()
        )));
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().into_string().map_err(|raw| {
            CliError::msg(format!(
                "{} is not valid UTF-8, which torrents require",
                dir.join(raw).display()
            ))
        })?;
        entries.push((name, entry.path()));
    }
    entries.sort();

    for (name, path) in entries {
        let link_meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // Where the entry really is: links must resolve inside the shared folder.
        let real = if link_meta.file_type().is_symlink() {
            let target = fs::canonicalize(&path)
                .with_context(|| format!("cannot follow the symbolic link {}", path.display()))?;
            if !target.starts_with(root) {
                return Err(CliError::msg(format!(
                    "the symbolic link {} points outside {} (to {})",
                    path.display(),
                    root.display(),
                    target.display()
                )));
            }
            target
        } else {
            path.clone()
        };
        let meta =
            fs::metadata(&real).with_context(|| format!("cannot read {}", path.display()))?;
        prefix.push(name);
        if meta.is_dir() {
            let canonical = fs::canonicalize(&real)
                .with_context(|| format!("cannot open {}", path.display()))?;
            if !ancestors.insert(canonical.clone()) {
                return Err(CliError::msg(format!(
                    "{} loops back to a folder that contains it",
                    path.display()
                )));
            }
            walk(root, &real, prefix, ancestors, out)?;
            ancestors.remove(&canonical);
        } else if meta.is_file() {
            if out.len() >= MAX_FILES {
                return Err(CliError::msg(format!("more than {MAX_FILES} files")));
            }
            out.push(SourceFile {
                components: prefix.clone(),
                disk_path: path,
                length: meta.len(),
            });
        } else {
            return Err(CliError::msg(format!(
                "{} is not a regular file or folder",
                path.display()
            )));
        }
        prefix.pop();
    }
    Ok(())
}

/// Writing the torrent over one of the files it describes would make it wrong at once.
fn refuse_output_inside_content(output: &Path, sources: &[SourceFile]) -> Result<(), CliError> {
    let Ok(output) = fs::canonicalize(output) else { return Ok(()) }; // does not exist yet
    for source in sources {
        if fs::canonicalize(&source.disk_path).is_ok_and(|p| p == output) {
            return Err(CliError::Usage(format!(
                "the output {} is one of the files being shared",
                output.display()
            )));
        }
    }
    Ok(())
}

fn hash_files(
    builder: TorrentBuilder,
    sources: &[SourceFile],
    json: bool,
) -> Result<Vec<u8>, CliError> {
    let mut hasher = builder.start().context("cannot create the torrent")?;
    let progress = byte_progress(hasher.total_length(), "hashing", json);
    let mut buf = vec![0u8; 1 << 20];
    for source in sources {
        let path = &source.disk_path;
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = file.take(source.length);
        let mut read_total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CliError::with_source(format!("cannot read {}", path.display()), e))
                }
            };
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk).context("cannot create the torrent")?;
            read_total += n as u64;
            progress.inc(n as u64);
        }
        if read_total != source.length {
            return Err(CliError::msg(format!(
                "{} shrank while it was being read ({} bytes, then {read_total})",
                path.display(),
                source.length
            )));
        }
    }
    progress.finish_and_clear();
    hasher.finish().context("cannot create the torrent")
}

fn report(metainfo: &Metainfo, output: &Path, json: bool) -> Result<(), CliError> {
    let info = &metainfo.info;
    if json {
        return print_json(&json!({
            "name": info.name,
            "info_hash": metainfo.info_hash.to_hex(),
            "magnet": metainfo.magnet_uri(),
            "output": output.display().to_string(),
            "total_length": info.total_length,
            "files": info.files.len(),
            "piece_length": info.piece_length,
            "piece_count": info.piece_count(),
            "private": info.private,
        }));
    }
    let mut table = Table::new();
    table
        .row("name", &info.name)
        .row("info hash", metainfo.info_hash)
        .row("size", format!("{} in {} file(s)", human_size(info.total_length), info.files.len()))
        .row(
            "pieces",
            format!("{} × {}", info.piece_count(), human_size(u64::from(info.piece_length))),
        )
        .row("magnet", metainfo.magnet_uri())
        .row("wrote", output.display());
    print!("{table}");
    Ok(())
}
