//! Pod namespaces without a pause process: a namespace created on a
//! throwaway thread and kept alive by a bind mount of its
//! `/proc/thread-self/ns/<kind>` file.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Net,
    Ipc,
    Uts,
}

impl Kind {
    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }
}

/// Creates a namespace of `kind` held by a bind mount at `path`. For UTS
/// namespaces the hostname is set first.
pub async fn create(kind: Kind, path: &Path, hostname: Option<&str>) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let path: PathBuf = path.to_path_buf();
    let hostname = hostname.map(String::from);
    // Awaited, not joined: the runtime's worker stays free meanwhile.
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let made = (|| -> io::Result<()> {
            unshare(kind.flag())?;
            if let Some(h) = hostname {
                nix::unistd::sethostname(h)?;
            }
            let source = format!("/proc/thread-self/ns/{}", kind.proc_name());
            mount(
                Some(source.as_str()),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })();
        let _ = done.send(made);
    });
    result
        .await
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Moves the namespace held at `from` to be held at `to` instead.
pub fn rebind(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(to)?;
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    remove(from)
}

/// Releases the namespace held at `path` (gone once nothing else uses it).
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs `f` on a thread that has entered the network namespace at `path`.
pub fn in_net<F, R>(path: &Path, f: F) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let ns = File::open(path)?;
    std::thread::spawn(move || -> io::Result<R> {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}
