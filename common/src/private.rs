//! Directories and files only their owner (root) may read: the store holds
//! Secrets, the data directory keys and tokens, a node's directory the
//! Secret volumes of its pods.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) as 0700, and makes an existing
/// `dir` 0700: one made readable by others before is closed again.
pub fn dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Makes `file` readable and writable by its owner only.
pub fn file(file: &Path) -> io::Result<()> {
    fs::set_permissions(file, Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_closed_to_others() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        dir(&open).unwrap();
        dir(&root.path().join("new/deeper")).unwrap();
        for d in [
            open.clone(),
            root.path().join("new"),
            root.path().join("new/deeper"),
        ] {
            assert_eq!(
                fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let f = open.join("f");
        fs::write(&f, "x").unwrap();
        file(&f).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
