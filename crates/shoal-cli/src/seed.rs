//! `shoal seed` (placeholder: the engine is wired in by the lead engineer).

use crate::{CliError, SeedArgs};

pub async fn run(args: SeedArgs) -> Result<(), CliError> {
    let SeedArgs { source, output: _, listen: _, trackers: _, peers: _, json: _ } = args;
    Err(CliError::msg(format!("`shoal seed {}`: seeding is not yet wired", source.display())))
}
