//! Where things are: the repository, the peer drivers, the `shoal` binary, the tools.

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The interpreter for the drivers: Debian's python3-libtorrent lives in the system Python,
/// which may not be the first `python3` on PATH (pyenv and virtualenvs shadow it).
pub const PYTHON: &str = "/usr/bin/python3";

/// Where scripts/install-test-deps.sh makes the virtualenv holding PyPI libtorrent 2.1 (the
/// WebTorrent-capable one), unless [`LT21_VENV_ENV`] names another.
pub const LT21_VENV: &str = "/var/cache/shoal-test-deps/lt21-venv";

/// Overrides [`LT21_VENV`] (the install script honours it too).
pub const LT21_VENV_ENV: &str = "SHOAL_LT21_VENV";

/// The interpreter of the libtorrent 2.1 virtualenv (it may not exist: see
/// [`crate::peers::lt21_unavailable`]).
pub fn lt21_python() -> PathBuf {
    let venv = env::var_os(LT21_VENV_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(LT21_VENV), PathBuf::from);
    venv.join("bin").join("python")
}

/// Set to skip interop tests on a machine without the reference peers (see [`skip_interop`]).
pub const SKIP_ENV: &str = "SHOAL_SKIP_INTEROP";

/// The repository root (the folder holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    // this crate lives at <root>/crates/shoal-testkit
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/peers`: the reference-peer drivers.
pub fn peers_dir() -> PathBuf {
    repo_root().join("tests").join("peers")
}

/// The path of one driver in `tests/peers`, checked to exist.
pub fn peer_script(name: &str) -> Result<PathBuf> {
    let path = peers_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Setup(format!("reference-peer driver {} is missing", path.display())))
    }
}

/// Finds the `shoal` binary to test, in this order:
/// 1. the `SHOAL_BIN` environment variable;
/// 2. `cargo_bin_exe`: integration tests of `shoal-cli` pass `option_env!("CARGO_BIN_EXE_shoal")`;
/// 3. `shoal` in the target folder of the running test executable (`target/<profile>/`).
pub fn shoal_bin(cargo_bin_exe: Option<&str>) -> Result<PathBuf> {
    if let Some(path) = env::var_os("SHOAL_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Setup(format!("SHOAL_BIN={} is not a file", path.display())))
        };
    }
    if let Some(path) = cargo_bin_exe.map(PathBuf::from).filter(|p| p.is_file()) {
        return Ok(path);
    }
    // test executables live in target/<profile>/deps/
    let exe = env::current_exe().map_err(|e| Error::io("locating the test executable", e))?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(format!("shoal{}", env::consts::EXE_SUFFIX)));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Setup(format!(
        "no shoal binary: set SHOAL_BIN or build it (`cargo build -p shoal-cli`) next to {}",
        exe.display()
    )))
}

/// Fails with a clear message when a program the tests need is not installed.
pub fn require_tool(program: &str) -> Result<PathBuf> {
    let found = if program.contains('/') {
        Some(PathBuf::from(program)).filter(|p| p.is_file())
    } else {
        env::var_os("PATH").and_then(|paths| {
            env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file())
        })
    };
    found.ok_or_else(|| {
        Error::Setup(format!(
            "{program} is not installed: run scripts/install-test-deps.sh (as root), \
             or set {SKIP_ENV}=1 to skip interop tests"
        ))
    })
}

/// True (after saying so on stderr) when the user asked to skip interop tests with
/// `SHOAL_SKIP_INTEROP=1`. Interop tests start with `if skip_interop() { return; }`; without
/// the variable a missing tool is an error, never a silent pass.
pub fn skip_interop() -> bool {
    let skip = env::var_os(SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if skip {
        eprintln!("{SKIP_ENV} is set: skipping this interop test");
    }
    skip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_repository_and_the_drivers() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(peer_script("lt_peer.py").is_ok());
        assert!(peer_script("no_such_driver.py").is_err());
    }

    #[test]
    fn require_tool_searches_path() {
        assert!(require_tool("sh").is_ok());
        let err = require_tool("surely-not-a-program-xyz").unwrap_err();
        assert!(err.to_string().contains("install-test-deps.sh"));
    }
}
