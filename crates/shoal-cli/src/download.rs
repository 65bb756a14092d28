//! `shoal download`: fetch a torrent to a folder, exit 0 once every selected file is complete
//! and verified (or keep seeding with `--seed`).

use crate::transfer::{self, TransferOptions};
use crate::{CliError, DownloadArgs};

pub async fn run(args: DownloadArgs) -> Result<(), CliError> {
    let source = transfer::resolve_source(&args.source).await?;
    let only_files: Option<Vec<usize>> = if !args.only.is_empty() {
        Some(args.only.iter().map(|&i| i as usize).collect())
    } else if let shoal::TorrentSource::Magnet(magnet) = &source {
        // A magnet's `so` (BEP 53) selects files unless --only overrides it. No torrent has
        // more than MAX_FILES files, which bounds what a huge range can expand to.
        let last = shoal_proto::metainfo::MAX_FILES as u32 - 1;
        let selected: std::collections::BTreeSet<usize> = magnet
            .select_only
            .iter()
            .flat_map(|r| *r.start()..=(*r.end()).min(last))
            .map(|i| i as usize)
            .collect();
        (!magnet.select_only.is_empty()).then(|| selected.into_iter().collect())
    } else {
        None
    };
    if let (Some(files), shoal::TorrentSource::Metainfo(meta)) = (&only_files, &source) {
        let count = meta.info.files.len();
        if let Some(bad) = files.iter().find(|&&i| i >= count) {
            return Err(CliError::Usage(format!(
                "--only {bad}: the torrent has {count} files (0-{})",
                count - 1
            )));
        }
    }
    let options = TransferOptions {
        output: args.output,
        peers: args.peers,
        listen: args.listen,
        webrtc: args.webrtc.config(),
        discovery: args.discovery.discovery(),
        trackers: args.trackers,
        web_seeds: args.web_seeds,
        only_files,
        json: args.json,
        keep_seeding: args.seed,
        require_complete: false,
        print_magnet: None,
        spread: false,
        rates: args.rates,
    };
    transfer::run(options, source).await
}
