//! The runtime directory (namespace handles, container state, sockets)
//! lives in memory, as `/run` does on most hosts: nothing in it means
//! anything after a reboot, and on a disk filesystem every container start
//! pays for several inode allocations there. Where the directory is on
//! disk, the agent mounts a tmpfs of its own on it, named so that cleanup
//! finds it again.

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statfs::{TMPFS_MAGIC, statfs};

/// The source name of the tmpfs the agent mounts.
const SOURCE: &str = "peapod-run";

/// Makes sure `dir` exists and is on a tmpfs, mounting one if it is empty
/// and on disk. A non-empty directory on disk (state of an earlier run
/// kept there) is left as it is, so that nothing of it is hidden.
pub fn ensure_in_memory(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if statfs(dir)?.filesystem_type() == TMPFS_MAGIC {
        return Ok(());
    }
    if std::fs::read_dir(dir)?.next().is_some() {
        tracing::info!(
            "{} is on disk and not empty: runtime state stays there",
            dir.display()
        );
        return Ok(());
    }
    mount(
        Some(SOURCE),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )?;
    Ok(())
}

/// Unmounts the agent's own tmpfs from `dir`, if it is there.
pub fn release(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if ours(&mountinfo, &dir.to_string_lossy()) {
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
    }
}

/// Whether `mountinfo` shows the agent's tmpfs mounted at `target`.
fn ours(mountinfo: &str, target: &str) -> bool {
    mountinfo.lines().any(|line| {
        let mut halves = line.split(" - ");
        let (Some(before), Some(after)) = (halves.next(), halves.next()) else {
            return false;
        };
        let mut fs = after.split(' ');
        before.split(' ').nth(4) == Some(target)
            && fs.next() == Some("tmpfs")
            && fs.next() == Some(SOURCE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_own_tmpfs_is_released() {
        let info = "\
30 22 0:50 / /run/peapod rw,nosuid,nodev,relatime shared:1 - tmpfs peapod-run rw,mode=700
31 22 0:51 / /run/other rw,relatime shared:2 - tmpfs tmpfs rw
32 22 254:0 / /var/lib rw,relatime shared:3 - ext4 /dev/vda rw";
        assert!(ours(info, "/run/peapod"));
        assert!(!ours(info, "/run/other"));
        assert!(!ours(info, "/var/lib"));
        assert!(!ours(info, "/run/peapod/netns"));
    }
}
