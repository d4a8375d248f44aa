//! subPath mounts that cannot be steered out of their volume. A volume is
//! writable by the pod's containers, so any path checked in it can be
//! swapped for a symlink before it is mounted. As the kubelet does, the
//! path is opened beneath the volume by the kernel (`openat2` with
//! `RESOLVE_BENEATH`: links inside the volume, such as a ConfigMap's
//! `..data`, are followed; none leading out), and what was opened is
//! bind-mounted through `/proc/self/fd` onto a pin the agent owns. The
//! runtime mounts the pin: whatever the containers change in the volume
//! afterwards, the pin holds the file or directory that was checked.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {0:?} must be a relative path without '..'")]
    NotLocal(String),
    #[error("subPath {0:?} leads out of the volume")]
    Escapes(String),
    #[error("subPath {sub:?}: {source}")]
    Io { sub: String, source: std::io::Error },
}

const PATH: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);

fn beneath(dir: &OwnedFd, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve)
}

/// Opens `sub` beneath `volume`, making the directories it names where
/// missing (as the kubelet does for a subPath that does not exist yet).
fn open(volume: &Path, sub: &str) -> Result<OwnedFd, SubPathError> {
    let io = |source: std::io::Error| SubPathError::Io {
        sub: sub.to_string(),
        source,
    };
    let errno = |e: Errno| match e {
        // What RESOLVE_BENEATH answers for a path that would leave the volume.
        Errno::XDEV | Errno::LOOP => SubPathError::Escapes(sub.to_string()),
        e => io(e.into()),
    };
    let path = Path::new(sub);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(SubPathError::NotLocal(sub.to_string()));
    }
    let root = rustix::fs::open(volume, PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| io(e.into()))?;
    match beneath(&root, path, PATH) {
        Err(Errno::NOENT) => {}
        other => return other.map_err(errno),
    }
    let mut made = std::path::PathBuf::new();
    for c in path.components() {
        let parent = if made.as_os_str().is_empty() {
            rustix::fs::openat(&root, ".", PATH | OFlags::DIRECTORY, Mode::empty())
        } else {
            beneath(&root, &made, PATH | OFlags::DIRECTORY)
        }
        .map_err(errno)?;
        match rustix::fs::mkdirat(&parent, c.as_os_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(errno(e)),
        }
        made.push(c);
    }
    beneath(&root, path, PATH).map_err(errno)
}

/// Resolves `sub` beneath `volume` and pins it at `pin` (a directory or an
/// empty file is made there to mount on), for the runtime to mount.
pub fn pin(volume: &Path, sub: &str, pin: &Path) -> Result<(), SubPathError> {
    let io = |source: std::io::Error| SubPathError::Io {
        sub: sub.to_string(),
        source,
    };
    let fd = open(volume, sub)?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    // A pin left by an earlier attempt of this run.
    super::volumes::unmount_all_under(pin);
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        std::fs::create_dir_all(pin).map_err(io)?;
    } else if !pin.exists() {
        std::fs::write(pin, b"").map_err(io)?;
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume and, beside it, a directory standing for the host.
    struct Dirs {
        _top: tempfile::TempDir,
        volume: std::path::PathBuf,
        host: std::path::PathBuf,
        pins: std::path::PathBuf,
    }

    impl Dirs {
        fn new() -> Dirs {
            let top = tempfile::tempdir().unwrap();
            let (volume, host, pins) = (
                top.path().join("volume"),
                top.path().join("host"),
                top.path().join("pins"),
            );
            for d in [&volume, &host, &pins] {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(host.join("secret"), b"host").unwrap();
            Dirs {
                _top: top,
                volume,
                host,
                pins,
            }
        }
    }

    impl Drop for Dirs {
        fn drop(&mut self) {
            super::super::volumes::unmount_all_under(&self.pins);
        }
    }

    #[test]
    fn absolute_and_dot_dot_paths_are_refused() {
        let d = Dirs::new();
        for sub in ["/etc", "../host", "a/../../host"] {
            let e = pin(&d.volume, sub, &d.pins.join("p")).unwrap_err();
            assert!(matches!(e, SubPathError::NotLocal(_)), "{sub}: {e}");
        }
    }

    #[test]
    fn links_inside_the_volume_are_followed_and_links_out_refused() {
        let d = Dirs::new();
        std::fs::create_dir_all(d.volume.join("..data")).unwrap();
        std::fs::write(d.volume.join("..data/key"), b"value").unwrap();
        std::os::unix::fs::symlink("..data/key", d.volume.join("key")).unwrap();
        let p = d.pins.join("key");
        pin(&d.volume, "key", &p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"value");

        std::os::unix::fs::symlink(&d.host, d.volume.join("out")).unwrap();
        std::os::unix::fs::symlink("../host", d.volume.join("up")).unwrap();
        for sub in ["out", "out/secret", "up/secret"] {
            let e = pin(&d.volume, sub, &d.pins.join("x")).unwrap_err();
            assert!(matches!(e, SubPathError::Escapes(_)), "{sub}: {e}");
        }
    }

    #[test]
    fn a_missing_subpath_is_made_as_a_directory_inside_the_volume() {
        let d = Dirs::new();
        let p = d.pins.join("new");
        pin(&d.volume, "a/b", &p).unwrap();
        assert!(d.volume.join("a/b").is_dir());
        std::fs::write(p.join("f"), b"1").unwrap();
        assert_eq!(std::fs::read(d.volume.join("a/b/f")).unwrap(), b"1");
    }

    #[test]
    fn a_symlink_swapped_in_after_pinning_changes_nothing() {
        let d = Dirs::new();
        std::fs::create_dir_all(d.volume.join("data")).unwrap();
        std::fs::write(d.volume.join("data/f"), b"volume").unwrap();
        let p = d.pins.join("data");
        pin(&d.volume, "data", &p).unwrap();
        // The container's move: the checked directory becomes a link out.
        std::fs::rename(d.volume.join("data"), d.volume.join("moved")).unwrap();
        std::os::unix::fs::symlink(&d.host, d.volume.join("data")).unwrap();
        assert_eq!(std::fs::read(p.join("f")).unwrap(), b"volume");
        assert!(!p.join("secret").exists());
    }
}
