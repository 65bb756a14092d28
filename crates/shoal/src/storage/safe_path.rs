//! Keeping every file the storage touches inside the download directory.
//!
//! The metainfo parser already rejects hostile names; this is the second wall. Each component is
//! checked on its own, and when a path is resolved on disk every component that already exists
//! is inspected without following it: a symbolic link is only followed when its target stays
//! under the root. The final file is then opened with `O_NOFOLLOW` (Unix), so a link swapped in
//! after the check is not followed either.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::error::{IoAction, StorageError};

/// Rejects a path component that could name anything other than one entry inside its parent.
pub fn check_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("empty path component");
    }
    if component == "." || component == ".." {
        return Err("relative path component");
    }
    if component.contains(['/', '\\']) {
        return Err("path separator inside a component");
    }
    if component.contains('\0') {
        return Err("NUL byte in a component");
    }
    windows_rules(component)?;
    // Whatever the platform's own rules, the component must parse as exactly one normal name.
    let mut parts = Path::new(component).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err("not a plain file name"),
    }
}

#[cfg(windows)]
fn windows_rules(component: &str) -> Result<(), &'static str> {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    if component.contains([':', '<', '>', '"', '|', '?', '*']) {
        return Err("character not allowed in Windows file names");
    }
    if component.ends_with(['.', ' ']) {
        return Err("Windows drops trailing dots and spaces");
    }
    let stem = component.split('.').next().unwrap_or(component);
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem.trim_end())) {
        return Err("reserved Windows device name");
    }
    Ok(())
}

#[cfg(not(windows))]
fn windows_rules(_component: &str) -> Result<(), &'static str> {
    Ok(())
}

/// Checks every component of a relative path.
pub fn check_relative(components: &[String]) -> Result<(), StorageError> {
    if components.is_empty() {
        return Err(StorageError::UnsafePath { path: String::new(), reason: "empty path" });
    }
    for component in components {
        check_component(component)
            .map_err(|reason| StorageError::UnsafePath { path: components.join("/"), reason })?;
    }
    Ok(())
}

/// Turns `components` into a path under `root` (which must be canonical), inspecting what is
/// already on disk. With `create_dirs`, missing parent directories are made one at a time so
/// each new level is checked like an existing one.
///
/// The returned path names no symbolic link below the root, except possibly the final
/// component if it appeared after the check (which `O_NOFOLLOW` then refuses).
pub fn resolve(
    root: &Path,
    components: &[String],
    create_dirs: bool,
) -> Result<PathBuf, StorageError> {
    check_relative(components)?;
    let mut current = root.to_path_buf();
    let last = components.len() - 1;
    for (i, component) in components.iter().enumerate() {
        let next = current.join(component);
        let is_last = i == last;
        current = match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => follow_inside(root, &next)?,
            Ok(meta) => {
                if !is_last && !meta.is_dir() {
                    return Err(StorageError::Obstructed {
                        path: next,
                        reason: "a file where a folder is needed",
                    });
                }
                next
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !is_last && create_dirs {
                    create_one_dir(&next)?;
                }
                next
            }
            Err(e) => return Err(StorageError::io(IoAction::Inspect, next, e)),
        };
        if is_last && current.is_dir() {
            return Err(StorageError::Obstructed {
                path: current,
                reason: "a folder where a file is needed",
            });
        }
    }
    if !current.starts_with(root) {
        return Err(StorageError::SymlinkEscape { path: current });
    }
    Ok(current)
}

/// Resolves the symbolic link at `link` and accepts it only if it lands under `root`.
fn follow_inside(root: &Path, link: &Path) -> Result<PathBuf, StorageError> {
    match fs::canonicalize(link) {
        Ok(target) if target.starts_with(root) => Ok(target),
        // A dangling link is refused too: creating through it could create outside the root.
        _ => Err(StorageError::SymlinkEscape { path: link.to_path_buf() }),
    }
}

fn create_one_dir(path: &Path) -> Result<(), StorageError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        // Someone else (another torrent sharing the folder) made it first: check what it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(()),
            _ => Err(StorageError::Obstructed {
                path: path.to_path_buf(),
                reason: "appeared while creating the folder",
            }),
        },
        Err(e) => Err(StorageError::io(IoAction::CreateDir, path, e)),
    }
}

/// Makes `root` if needed and returns its canonical form, against which every file path is
/// checked.
pub fn prepare_root(root: &Path) -> Result<PathBuf, StorageError> {
    fs::create_dir_all(root).map_err(|e| StorageError::io(IoAction::CreateDir, root, e))?;
    fs::canonicalize(root).map_err(|e| StorageError::io(IoAction::Inspect, root, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_that_name_something_else_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "/etc", "x\0y"] {
            assert!(check_component(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "..a", "a..", ".hidden", "Movie: Part 2", "ünï cødé"] {
            if cfg!(windows) && good.contains(':') {
                continue;
            }
            assert!(check_component(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn empty_path_is_refused() {
        assert!(check_relative(&[]).is_err());
    }
}
