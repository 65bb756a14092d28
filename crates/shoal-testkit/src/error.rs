//! One error type for everything the harness can run into, with enough context to debug a
//! failed interop test from the test log alone (the tail of the peer's output is included).

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness step failed.
#[derive(thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A bounded wait ran out.
    #[error("{name}: no {what} within {timeout:?}{}", tail_block(name, tail))]
    Timeout { name: String, what: String, timeout: Duration, tail: String },
    /// The process ended while we were still waiting for something from it.
    #[error("{name} exited ({status}) while waiting for {what}{}", tail_block(name, tail))]
    Exited { name: String, what: String, status: String, tail: String },
    /// A driver printed `{"event":"error","message":...}`.
    #[error("{name} reported an error: {message}{}", tail_block(name, tail))]
    Reported { name: String, message: String, tail: String },
    /// The harness was used wrongly or the machine lacks something (a tool, a script).
    #[error("{0}")]
    Setup(String),
    /// Two directory trees that should be identical are not.
    #[error("trees differ ({expected} vs {actual}):\n{differences}")]
    TreesDiffer { expected: String, actual: String, differences: String },
}

// Tests that return `Result<(), Error>` print the error with `{:?}`: make that the readable
// message rather than a struct dump with escaped newlines.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn exited(name: &str, what: &str, status: Option<ExitStatus>, tail: String) -> Self {
        Error::Exited {
            name: name.to_owned(),
            what: what.to_owned(),
            status: status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string()),
            tail,
        }
    }
}

fn tail_block(name: &str, tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- last output of {name} ---\n{tail}\n--- end of output ---")
    }
}
