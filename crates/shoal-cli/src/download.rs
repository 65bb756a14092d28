//! `shoal download` (placeholder: the engine is wired in by the lead engineer).

use crate::{CliError, DownloadArgs};

pub async fn run(args: DownloadArgs) -> Result<(), CliError> {
    let DownloadArgs { source, output: _, peers: _, listen: _, seed: _, json: _, trackers: _, only: _ } =
        args;
    Err(CliError::msg(format!("`shoal download {source}`: downloading is not yet wired")))
}
