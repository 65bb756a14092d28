//! Nothing a torrent names may be written outside the download folder.

use std::fs;

use shoal::storage::{FileSpec, FileStorage, PieceStorage, StorageError, StorageLayout};

fn spec(path: &[&str]) -> FileSpec {
    FileSpec::new(path, 8)
}

fn one_file(path: &[&str]) -> StorageLayout {
    StorageLayout::new(8, vec![spec(path)]).unwrap()
}

#[test]
fn hostile_components_are_refused_before_touching_disk() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("downloads");
    let hostile: &[&[&str]] = &[
        &["..", "escaped"],
        &["a", "..", "..", "escaped"],
        &[".", "a"],
        &["/etc", "passwd"],
        &["a/../../escaped"],
        &["a\\..\\escaped"],
        &["nul\0byte"],
        &["a", "", "b"],
        &[],
    ];
    for path in hostile {
        let result = FileStorage::open(&root, one_file(path), &[true]);
        assert!(matches!(result, Err(StorageError::UnsafePath { .. })), "{path:?} was accepted");
    }
    assert!(!outer.path().join("escaped").exists());
    // Refused even when the file is not selected: the torrent is bad as a whole.
    let layout = StorageLayout::new(8, vec![spec(&["ok"]), spec(&["..", "x"])]).unwrap();
    assert!(FileStorage::open(&root, layout, &[true, false]).is_err());
}

#[test]
fn duplicate_paths_and_part_folder_collisions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StorageLayout::new(8, vec![spec(&["a", "b"]), spec(&["a", "b"])]).unwrap();
    assert!(matches!(
        FileStorage::open(dir.path(), layout, &[true, true]),
        Err(StorageError::DuplicatePath { .. })
    ));
    let layout = StorageLayout::new(8, vec![spec(&["a", "b"]), spec(&["a", "b", "c"])]).unwrap();
    assert!(matches!(
        FileStorage::open(dir.path(), layout.clone(), &[true, true]),
        Err(StorageError::FileIsAlsoFolder { .. })
    ));
    // Only selected files are created, so only they can collide.
    FileStorage::open(dir.path(), layout, &[true, false]).unwrap();
    let layout = StorageLayout::new(8, vec![spec(&["a"]), spec(&[".parts", "0.part"])]).unwrap();
    let options = shoal::storage::FileStorageOptions {
        part_dir: Some(".parts".into()),
        ..Default::default()
    };
    assert!(FileStorage::open_with(dir.path(), layout, &[true, true], options).is_err());
}

#[cfg(unix)]
#[test]
fn a_symlinked_folder_pointing_outside_is_not_followed() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let outside = outer.path().join("outside");
    fs::create_dir_all(root.join("t")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("t").join("evil")).unwrap();

    let layout = one_file(&["t", "evil", "payload"]);
    let storage = FileStorage::open(&root, layout, &[true]).unwrap();
    let err = storage.write_block(0, 0, b"12345678").unwrap_err();
    assert!(matches!(err, StorageError::SymlinkEscape { .. }), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    let mut buf = [0u8; 8];
    assert!(storage.read_block(0, 0, &mut buf).is_err());
    assert!(storage.may_hold_piece(0).is_err());
}

#[cfg(unix)]
#[test]
fn a_symlinked_file_pointing_outside_is_not_written() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let victim = outer.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("file")).unwrap();
    // A dangling link is refused as well: writing through it would create the target.
    std::os::unix::fs::symlink(outer.path().join("nothing"), root.join("dangling")).unwrap();

    let layout = StorageLayout::new(8, vec![spec(&["file"]), spec(&["dangling"])]).unwrap();
    let storage = FileStorage::open(&root, layout, &[true, true]).unwrap();
    assert!(storage.write_block(0, 0, b"overwrit").is_err());
    assert!(storage.write_block(1, 0, b"created!").is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!outer.path().join("nothing").exists());
}

#[cfg(unix)]
#[test]
fn a_symlink_that_stays_inside_the_root_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("real")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
    let storage = FileStorage::open(&root, one_file(&["alias", "f"]), &[true]).unwrap();
    storage.write_block(0, 0, b"inside!!").unwrap();
    assert_eq!(fs::read(root.join("real").join("f")).unwrap(), b"inside!!");
}

#[test]
fn a_file_where_a_folder_is_needed_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("t"), b"i am a file").unwrap();
    let storage = FileStorage::open(dir.path(), one_file(&["t", "f"]), &[true]).unwrap();
    assert!(matches!(storage.write_block(0, 0, b"12345678"), Err(StorageError::Obstructed { .. })));
    fs::create_dir_all(dir.path().join("d").join("f")).unwrap();
    let storage = FileStorage::open(dir.path(), one_file(&["d", "f"]), &[true]).unwrap();
    assert!(matches!(storage.write_block(0, 0, b"12345678"), Err(StorageError::Obstructed { .. })));
}
