//! The files of ConfigMap, Secret, projected and downward API volumes,
//! laid out as the kubelet lays them out, so that a running container
//! never sees a half-updated volume: the files live in a hidden directory
//! `..<time>`, `..data` links to the current one, and every top-level name
//! links through `..data`. An update writes a new directory and swaps
//! `..data` with one rename (applications that watch `..data` see it).

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

/// A file: its path in the volume, content and mode.
pub type File = (String, Vec<u8>, u32);

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether `rel` may be written: relative, without `..`, and not one of
/// the hidden names the layout uses.
fn allowed(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with("..")
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Makes `dir` hold exactly `files`; returns whether anything changed.
pub fn write(dir: &Path, files: &[File]) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let files: Vec<&File> = files.iter().filter(|(rel, _, _)| allowed(rel)).collect();
    if holds(&dir.join(DATA), &files) {
        return Ok(false);
    }
    let stamp = format!("..{}", timestamp());
    let staged = dir.join(&stamp);
    std::fs::create_dir(&staged)?;
    for (rel, data, mode) in &files {
        let path = staged.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;

    let tops: BTreeSet<&str> = files
        .iter()
        .filter_map(|(rel, _, _)| rel.split('/').next())
        .collect();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let keep = if name.starts_with("..") {
            name == DATA || name == stamp
        } else {
            // A top-level name stays if it is still wanted and already a
            // link (files of the older, flat layout are replaced).
            tops.contains(name.as_str()) && is_link
        };
        if !keep {
            if path.is_dir() && !is_link {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    for top in tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(top), &link)?;
        }
    }
    Ok(true)
}

/// Whether the directory behind `data` holds exactly `files`.
fn holds(data: &Path, files: &[&File]) -> bool {
    if !data.is_dir() {
        return false;
    }
    let all_match = files.iter().all(|(rel, content, mode)| {
        let path = data.join(rel);
        std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == *mode)
            && std::fs::read(&path).is_ok_and(|d| d == *content)
    });
    all_match && count_files(data) == files.len()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, data: &str) -> File {
        (rel.into(), data.as_bytes().to_vec(), 0o644)
    }

    fn read(dir: &Path, rel: &str) -> String {
        std::fs::read_to_string(dir.join(rel)).unwrap_or_default()
    }

    #[test]
    fn updates_swap_the_data_link_and_drop_what_went() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A volume written by the older, flat layout.
        std::fs::write(d.join("old.conf"), "flat").unwrap();
        assert!(write(d, &[file("a.conf", "1"), file("sub/b.conf", "2")]).unwrap());
        assert_eq!(
            (read(d, "a.conf"), read(d, "sub/b.conf")),
            ("1".into(), "2".into())
        );
        assert!(!d.join("old.conf").exists());
        assert!(
            std::fs::symlink_metadata(d.join("a.conf"))
                .unwrap()
                .is_symlink()
        );
        let first = std::fs::read_link(d.join(DATA)).unwrap();

        // The same content again changes nothing.
        assert!(!write(d, &[file("a.conf", "1"), file("sub/b.conf", "2")]).unwrap());
        assert_eq!(std::fs::read_link(d.join(DATA)).unwrap(), first);

        // New content lands behind a new `..data`; the old directory goes.
        assert!(write(d, &[file("a.conf", "3")]).unwrap());
        assert_eq!(read(d, "a.conf"), "3");
        assert!(!d.join("sub").exists());
        assert!(!d.join(&first).exists());
        let hidden: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".."))
            .collect();
        assert_eq!(hidden.len(), 2, "{hidden:?}");
    }

    #[test]
    fn paths_out_of_the_volume_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("v");
        write(
            &d,
            &[
                file("../escape", "x"),
                file("/abs", "x"),
                file("..data", "x"),
                file("ok", "y"),
            ],
        )
        .unwrap();
        assert!(!dir.path().join("escape").exists());
        assert_eq!(read(&d, "ok"), "y");
        assert!(std::fs::read_link(d.join(DATA)).is_ok());
    }
}
