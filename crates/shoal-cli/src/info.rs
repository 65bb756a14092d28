//! `shoal info`: what a .torrent or a magnet link describes.

use std::fs;
use std::io::Read;

use serde_json::{json, Value};
use shoal_proto::magnet::Magnet;
use shoal_proto::metainfo::{Metainfo, MAX_METAINFO_BYTES};

use crate::output::{human_size, print_json, utc_date, CliError, Context, Table};
use crate::InfoArgs;

pub fn run(args: InfoArgs) -> Result<(), CliError> {
    if args.source.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("magnet:")) {
        let magnet = Magnet::parse(&args.source).context("invalid magnet link")?;
        return show_magnet(&magnet, args.json);
    }
    let metainfo = read_torrent(&args.source)?;
    show_torrent(&metainfo, args.json)
}

/// Reads and parses a .torrent, refusing to load more than the parser would accept.
pub fn read_torrent(path: &str) -> Result<Metainfo, CliError> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_METAINFO_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {path}"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{path} is not a valid torrent"))
}

fn show_torrent(metainfo: &Metainfo, json: bool) -> Result<(), CliError> {
    let info = &metainfo.info;
    if json {
        let files: Vec<Value> = info
            .files
            .iter()
            .enumerate()
            .map(|(index, f)| {
                json!({
                    "index": index,
                    "path": f.path.join("/"),
                    "length": f.length,
                    "offset": f.offset,
                    "padding": f.padding,
                })
            })
            .collect();
        return print_json(&json!({
            "kind": "torrent",
            "name": info.name,
            "info_hash": metainfo.info_hash.to_hex(),
            "total_length": info.total_length,
            "piece_length": info.piece_length,
            "piece_count": info.piece_count(),
            "private": info.private,
            "multi_file": info.multi_file,
            "files": files,
            "trackers": metainfo.trackers,
            "web_seeds": metainfo.web_seeds,
            "comment": metainfo.comment,
            "created_by": metainfo.created_by,
            "creation_date": metainfo.creation_date,
            "magnet": metainfo.magnet_uri(),
        }));
    }

    let real_files = info.files.iter().filter(|f| !f.padding).count();
    let padding: u64 = info.files.iter().filter(|f| f.padding).map(|f| f.length).sum();
    let content = info.total_length - padding;
    let mut size = format!("{} ({content} bytes) in {real_files} file(s)", human_size(content));
    if padding > 0 {
        size.push_str(&format!(", plus {padding} bytes of alignment padding"));
    }
    let mut table = Table::new();
    table
        .row("name", &info.name)
        .row("info hash", metainfo.info_hash)
        .row("size", size)
        .row(
            "pieces",
            format!("{} × {}", info.piece_count(), human_size(u64::from(info.piece_length))),
        )
        .row("private", if info.private { "yes" } else { "no" });
    for (i, tier) in metainfo.trackers.iter().enumerate() {
        table.row(&format!("tracker tier {}", i + 1), tier.join(" "));
    }
    for seed in &metainfo.web_seeds {
        table.row("web seed", seed);
    }
    if let Some(comment) = &metainfo.comment {
        table.row("comment", comment);
    }
    if let Some(created_by) = &metainfo.created_by {
        table.row("created by", created_by);
    }
    if let Some(date) = metainfo.creation_date {
        table.row("created on", utc_date(date));
    }
    table.row("magnet", metainfo.magnet_uri());
    print!("{table}");

    println!("files:");
    // Indices are the torrent's own (padding files count), as `download --only` takes them.
    for (index, file) in info.files.iter().enumerate().filter(|(_, f)| !f.padding) {
        println!("  {index:>4}  {:>10}  {}", human_size(file.length), file.path.join("/"));
    }
    Ok(())
}

fn show_magnet(magnet: &Magnet, json: bool) -> Result<(), CliError> {
    if json {
        let select_only: Vec<[u32; 2]> =
            magnet.select_only.iter().map(|r| [*r.start(), *r.end()]).collect();
        return print_json(&json!({
            "kind": "magnet",
            "name": magnet.display_name,
            "info_hash": magnet.info_hash.to_hex(),
            "trackers": magnet.trackers,
            "web_seeds": magnet.web_seeds,
            "exact_sources": magnet.exact_sources,
            "peers": magnet.peers,
            "select_only": select_only,
            "magnet": magnet.to_uri(),
        }));
    }
    let mut table = Table::new();
    table
        .row("name", magnet.display_name.as_deref().unwrap_or("(not given)"))
        .row("info hash", magnet.info_hash);
    for tracker in &magnet.trackers {
        table.row("tracker", tracker);
    }
    for seed in &magnet.web_seeds {
        table.row("web seed", seed);
    }
    for source in &magnet.exact_sources {
        table.row("torrent at", source);
    }
    for peer in &magnet.peers {
        table.row("peer", peer);
    }
    if !magnet.select_only.is_empty() {
        table.row("only files", magnet.select_only_text());
    }
    table.row("files", "unknown until the metadata is fetched from peers");
    print!("{table}");
    Ok(())
}
