//! What the user sees: the error type every command returns (and how it is printed), sizes
//! and dates in human form, JSON output, and the progress bar.

use std::error::Error;
use std::fmt;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A command's failure. `Usage` exits with 2 (like clap's own usage errors), the rest with 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{message}")]
    Failed {
        message: String,
        #[source]
        source: Option<Box<dyn Error + Send + Sync>>,
    },
}

impl CliError {
    /// A failure with no underlying cause.
    pub fn msg(message: impl Into<String>) -> Self {
        CliError::Failed { message: message.into(), source: None }
    }

    /// A failure caused by `source`, which is printed after the message.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        CliError::Failed { message: message.into(), source: Some(Box::new(source)) }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed { .. } => 1,
        }
    }
}

/// `.context("what we were doing")` on any `Result` whose error is a real error type.
pub trait Context<T> {
    fn context(self, message: impl Into<String>) -> Result<T, CliError>;
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T, CliError>;
}

impl<T, E: Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T, CliError> {
        self.map_err(|e| CliError::with_source(message, e))
    }

    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T, CliError> {
        self.map_err(|e| CliError::with_source(message(), e))
    }
}

/// `shoal: message: cause: cause...` on one line.
pub fn format_error(error: &CliError) -> String {
    format!("shoal: {}", error_chain(error))
}

/// An error and its causes on one line, `outer: inner: ...` (for answers to API clients too).
pub fn error_chain(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

/// Prints one JSON value on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).context("cannot format JSON")?;
    println!("{text}");
    Ok(())
}

/// `1.5 MiB`: binary units, one decimal above bytes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A Unix timestamp as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian calendar).
pub fn utc_date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil-from-days over 400-year eras (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A byte-count progress bar on stderr; hidden when stderr is not a terminal or when the
/// output is JSON (a script is reading).
pub fn byte_progress(total: u64, label: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

/// Aligned `label: value` lines for human output.
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new() -> Self {
        Table { rows: Vec::new() }
    }

    pub fn row(&mut self, label: &str, value: impl fmt::Display) -> &mut Self {
        self.rows.push((label.to_owned(), value.to_string()));
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        for (label, value) in &self.rows {
            writeln!(f, "{:<width$} {value}", format!("{label}:"), width = width)?;
        }
        Ok(())
    }
}

/// A torrent's phase as JSON names it (`/api/status`, `/api/torrents`, progress events).
pub fn phase_name(phase: &shoal::Phase) -> &'static str {
    match phase {
        shoal::Phase::FetchingMetadata => "metadata",
        shoal::Phase::Checking { .. } => "checking",
        shoal::Phase::Downloading => "downloading",
        shoal::Phase::Seeding => "seeding",
        shoal::Phase::Failed(_) => "failed",
        shoal::Phase::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(16 << 20), "16.0 MiB");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn error_chain_is_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = CliError::with_source("cannot read x.torrent", io);
        assert_eq!(format_error(&err), "shoal: cannot read x.torrent: no such file");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(CliError::Usage("bad".into()).exit_code(), 2);
    }
}
