//! A container's root filesystem: the image layers as overlayfs lower
//! directories under a private writable upper directory.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Mounts the layers (bottom first) at `target` with `upper`/`work` as the
/// writable part, creating the directories as needed. A `target` that is
/// already mounted (a start that failed after this step, tried again) is
/// left as it is.
pub fn mount_rootfs(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d)?;
    }
    if is_mounted(target)? {
        return Ok(());
    }
    if layers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "image has no filesystem layers",
        ));
    }
    // overlayfs lists lower directories top first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(io::Error::from)
}

/// Whether a filesystem is mounted at `dir`: an overlay has a device of
/// its own (cheaper than reading the mount table, which grows with pods).
fn is_mounted(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    Ok(std::fs::metadata(dir)?.dev() != std::fs::metadata(parent)?.dev())
}

/// Unmounts `target` if something is mounted there (lazily, so that a busy
/// mount cannot block cleanup).
pub fn unmount(target: &Path) -> io::Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
