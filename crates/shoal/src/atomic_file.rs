//! Files replaced whole: a crash (or a power loss) leaves the old file or the new one, never a
//! torn mix. Used for the state Shoal keeps between runs (the DHT's nodes, resume records).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file beside it, synced, then renamed over
/// `path`. The folder is created if missing.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    // A name of this write's own: periodic saves, the one at exit and other Shoal processes
    // sharing the default folder never write into each other's.
    let tmp =
        path.with_extension(format!("tmp.{}.{:x}", std::process::id(), rand::random::<u32>()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        // Durable before it replaces the old file, so a power loss cannot leave the new name
        // pointing at an empty file.
        file.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself, made durable (best effort: not every file system syncs folders).
    if let Some(dir) = dir {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("shoal-atomic-{}", rand::random::<u64>()));
        let path = dir.join("sub").join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
