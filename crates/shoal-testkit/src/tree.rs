//! Byte-for-byte comparison of what was shared and what was downloaded.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::error::{Error, Result};

/// Lower-case hex SHA-1 of a file's content.
pub fn sha1_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What [`compare_trees`] tolerates.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeCompare {
    /// Zero-length files of `expected` may be absent from `actual`: Transmission 3.00, for
    /// one, never creates them.
    pub allow_missing_empty_files: bool,
    /// Files in `actual` that `expected` lacks are ignored (partial-download leftovers of
    /// clients that keep them, for instance).
    pub ignore_extra_files: bool,
}

/// Checks that every regular file under `expected` exists under `actual` with the same bytes,
/// and (unless told otherwise) that `actual` has no other files. Folders are not compared
/// (empty ones carry no data); symlinks and other special files count as differences.
pub fn compare_trees(expected: &Path, actual: &Path, opts: TreeCompare) -> Result<()> {
    let want = list_files(expected)?;
    let got = list_files(actual)?;
    let mut differences = Vec::new();
    for (rel, entry) in &want {
        match (entry, got.get(rel)) {
            (Entry::File(0), None) if opts.allow_missing_empty_files => {}
            (_, None) => differences.push(format!("missing: {rel}")),
            (Entry::File(a), Some(Entry::File(b))) if a != b => {
                differences.push(format!("size differs: {rel} ({a} vs {b} bytes)"));
            }
            (Entry::File(_), Some(Entry::File(_))) => {
                if let Some(offset) = first_difference(&under(expected, rel), &under(actual, rel))?
                {
                    differences.push(format!("content differs: {rel} (first at byte {offset})"));
                }
            }
            (a, Some(b)) => differences.push(format!("not a regular file: {rel} ({a:?} vs {b:?})")),
        }
    }
    if !opts.ignore_extra_files {
        for rel in got.keys().filter(|rel| !want.contains_key(*rel)) {
            differences.push(format!("unexpected: {rel}"));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(Error::TreesDiffer {
            expected: expected.display().to_string(),
            actual: actual.display().to_string(),
            differences: differences.join("\n"),
        })
    }
}

/// Panics, listing every difference, unless the two trees hold the same files and bytes.
/// `expected` and `actual` may also be two single files.
#[track_caller]
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    if let Err(e) = compare_trees(expected, actual, TreeCompare::default()) {
        panic!("{e}");
    }
}

/// [`assert_trees_equal`] for clients that skip zero-length files (Transmission 3.00).
#[track_caller]
pub fn assert_trees_equal_allow_missing_empty(expected: &Path, actual: &Path) {
    let opts = TreeCompare { allow_missing_empty_files: true, ..TreeCompare::default() };
    if let Err(e) = compare_trees(expected, actual, opts) {
        panic!("{e}");
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Other,
}

/// Every non-folder entry under `root`, keyed by its "/"-separated path relative to `root`.
/// A `root` that is itself a file is listed as "".
fn list_files(root: &Path) -> Result<BTreeMap<String, Entry>> {
    let meta = fs::symlink_metadata(root)
        .map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
    let mut out = BTreeMap::new();
    if !meta.is_dir() {
        out.insert(String::new(), entry_of(&meta));
        return Ok(out);
    }
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let read =
            fs::read_dir(&dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for item in read {
            let item = item.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(item.path())
                .map_err(|e| Error::io(format!("reading {}", item.path().display()), e))?;
            if meta.is_dir() {
                stack.push((item.path(), rel));
            } else {
                out.insert(rel, entry_of(&meta));
            }
        }
    }
    Ok(out)
}

/// `root/rel`, where the empty `rel` of a single-file "tree" means `root` itself.
fn under(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn entry_of(meta: &fs::Metadata) -> Entry {
    if meta.is_file() {
        Entry::File(meta.len())
    } else {
        Entry::Other
    }
}

/// The offset of the first differing byte of two files of equal length, if any.
fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>> {
    let open = |p: &Path| {
        File::open(p)
            .map(|f| BufReader::with_capacity(1 << 16, f))
            .map_err(|e| Error::io(format!("opening {}", p.display()), e))
    };
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut ra, &mut ba)
            .map_err(|e| Error::io(format!("reading {}", a.display()), e))?;
        let m = read_full(&mut rb, &mut bb)
            .map_err(|e| Error::io(format!("reading {}", b.display()), e))?;
        let common = n.min(m);
        if let Some(i) = ba[..common].iter().zip(&bb[..common]).position(|(x, y)| x != y) {
            return Ok(Some(offset + i as u64));
        }
        if n != m {
            return Ok(Some(offset + common as u64));
        }
        if n == 0 {
            return Ok(None);
        }
        offset += n as u64;
    }
}

/// Fills `buf` unless the stream ends first; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::payload_tree;

    fn copy_tree(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                fs::create_dir_all(&target).unwrap();
                copy_tree(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn sha1_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(sha1_file(&path).unwrap(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn detects_every_kind_of_difference() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        payload_tree(&a, 100_000, 16384, 5, 3).unwrap();
        fs::create_dir_all(&b).unwrap();
        copy_tree(&a, &b);
        assert_trees_equal(&a, &b);

        // one flipped byte deep inside a nested file
        let gamma = b.join("nested/deeper/gamma.bin");
        let mut bytes = fs::read(&gamma).unwrap();
        bytes[12345] ^= 1;
        fs::write(&gamma, &bytes).unwrap();
        fs::remove_file(b.join("empty.txt")).unwrap();
        fs::write(b.join("extra.part"), b"x").unwrap();
        let err = compare_trees(&a, &b, TreeCompare::default()).unwrap_err().to_string();
        assert!(
            err.contains("content differs: nested/deeper/gamma.bin (first at byte 12345)"),
            "{err}"
        );
        assert!(err.contains("missing: empty.txt"), "{err}");
        assert!(err.contains("unexpected: extra.part"), "{err}");

        let lenient = TreeCompare { allow_missing_empty_files: true, ignore_extra_files: true };
        let err = compare_trees(&a, &b, lenient).unwrap_err().to_string();
        assert!(!err.contains("empty.txt") && !err.contains("extra.part"), "{err}");

        fs::write(&gamma, &bytes[..100]).unwrap();
        let err = compare_trees(&a, &b, lenient).unwrap_err().to_string();
        assert!(err.contains("size differs: nested/deeper/gamma.bin"), "{err}");
    }

    #[test]
    fn compares_single_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"same").unwrap();
        fs::write(&b, b"same").unwrap();
        assert_trees_equal(&a, &b);
        fs::write(&b, b"sane").unwrap();
        assert!(compare_trees(&a, &b, TreeCompare::default()).is_err());
    }
}
