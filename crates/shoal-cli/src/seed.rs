//! `shoal seed`: share a torrent's content, or make a torrent for a file or folder and share
//! it. With a .torrent the data is checked before seeding and must be complete; with a path,
//! the torrent is made in memory and its magnet printed.

use std::path::{Path, PathBuf};

use shoal::TorrentSource;
use shoal_proto::metainfo::Metainfo;

use crate::create::share_in_place;
use crate::output::Context;
use crate::transfer::{self, TransferOptions};
use crate::{CliError, SeedArgs};

pub async fn run(args: SeedArgs) -> Result<(), CliError> {
    let (meta, dir) = match read_torrent_file(&args.source)? {
        Some(meta) => {
            // Data is looked for in DIR, the current folder by default, as `download -o DIR`
            // would have put it.
            let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
            // Checked here because opening the storage would create a missing DIR, and a
            // failed seed must leave no trace.
            if !dir.is_dir() {
                return Err(CliError::msg(format!(
                    "{} is not a folder: nothing to seed from",
                    dir.display()
                )));
            }
            if args.piece_size.is_some() {
                return Err(CliError::Usage(
                    "--piece-size applies to sharing a PATH; a .torrent has its pieces".into(),
                ));
            }
            (meta, dir)
        }
        None => {
            if args.output.is_some() {
                return Err(CliError::Usage(
                    "-o DIR applies to seeding a .torrent; a PATH is shared where it is".into(),
                ));
            }
            share_path(&args).await?
        }
    };
    let magnet = meta.to_magnet();
    let options = TransferOptions {
        output: dir,
        peers: args.peers,
        listen: args.listen,
        webrtc: args.webrtc.config(),
        discovery: args.discovery.discovery(),
        trackers: args.trackers,
        web_seeds: Vec::new(),
        only_files: None,
        json: args.json,
        keep_seeding: true,
        require_complete: true,
        print_magnet: Some(magnet),
        spread: !args.no_spread,
        rates: args.rates,
    };
    transfer::run(options, TorrentSource::Metainfo(Box::new(meta))).await
}

/// The torrent in `path`, if it is a .torrent file; `None` if it is content to share.
fn read_torrent_file(path: &Path) -> Result<Option<Metainfo>, CliError> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    let looks_like_torrent = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("torrent"));
    if !meta.is_file() || !looks_like_torrent {
        return Ok(None);
    }
    let bytes = transfer::read_bounded(path)?;
    let meta = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))?;
    Ok(Some(meta))
}

/// Makes a torrent for a file or folder; its content is then seeded from the parent folder.
async fn share_path(args: &SeedArgs) -> Result<(Metainfo, PathBuf), CliError> {
    let remember = args.discovery.discovery().resume_dir;
    let trackers = args.trackers.clone();
    let shared =
        share_in_place(&args.source, trackers, Vec::new(), args.piece_size, args.json, remember)
            .await?;
    Ok((shared.meta, shared.root))
}
