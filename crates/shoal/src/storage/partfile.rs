//! Where bytes of unselected files go.
//!
//! A piece that straddles a wanted file and an unwanted one must still be downloaded whole to
//! be verified, and once verified it may be served. The wanted file's bytes go to that file;
//! the unwanted file's bytes go to a small file of their own, one per piece:
//! `<root>/<part dir>/<piece>.part`, at the same offset they have in the piece (the rest of
//! the file is a hole). Keying by piece keeps the scheme stateless: there is no index to keep
//! consistent across a crash, and a part file means the same thing whatever the selection was
//! when it was written. Only pieces that touch unselected files ever get one, so there are few.

use sha1::{Digest, Sha1};

use super::error::StorageError;
use super::layout::StorageLayout;
use super::safe_path::check_component;

#[derive(Debug, Clone)]
pub struct PartFiles {
    dir_name: String,
}

impl PartFiles {
    /// Part files under `<root>/<dir_name>`; the name must be one plain path component.
    pub fn new(dir_name: String) -> Result<Self, StorageError> {
        check_component(&dir_name)
            .map_err(|reason| StorageError::UnsafePath { path: dir_name.clone(), reason })?;
        Ok(PartFiles { dir_name })
    }

    /// A name derived from the layout, so torrents sharing a download folder do not share part
    /// files. (A caller that knows the info hash can pass that instead.)
    pub fn for_layout(layout: &StorageLayout) -> Self {
        let mut hasher = Sha1::new();
        hasher.update(layout.piece_length().to_le_bytes());
        for file in layout.files() {
            hasher.update(file.length.to_le_bytes());
            hasher.update([u8::from(file.padding)]);
            for component in &file.path {
                hasher.update((component.len() as u64).to_le_bytes());
                hasher.update(component.as_bytes());
            }
        }
        let digest = hasher.finalize();
        let mut name = String::from(".shoal-parts-");
        for byte in &digest[..8] {
            name.push_str(&format!("{byte:02x}"));
        }
        PartFiles { dir_name: name }
    }

    pub fn dir_name(&self) -> &str {
        &self.dir_name
    }

    /// Path components, relative to the root, of `piece`'s part file.
    pub fn components(&self, piece: u32) -> [String; 2] {
        [self.dir_name.clone(), format!("{piece}.part")]
    }
}
