//! Unpacking image layers into directories that overlayfs stacks: OCI
//! whiteouts (`.wh.<name>`, `.wh..wh..opq`) become overlay whiteouts (a 0/0
//! character device) and opaque directories (`trusted.overlay.opaque=y`).
//!
//! A layer is hostile input. Every path it names (entries, hard link
//! targets, the directories of whiteouts) is resolved by the kernel beneath
//! the layer's directory as if it were `/` (`openat2` with
//! `RESOLVE_IN_ROOT`), and the last component is created, replaced or
//! removed with `*at` calls that never follow a symlink: no symlink or `..`
//! in a layer reaches a file of the host. Device nodes are not created (as
//! rootless tools do): containers get their devices from the runtime.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const XATTR_PREFIX: &str = "SCHILY.xattr.";

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// An entry's name made relative to the layer; `..` is refused outright.
fn relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "layer entry {} escapes the layer",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// `path`'s directory and last component.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(invalid(format!("layer entry {:?} has no name", path))),
    }
}

fn context(what: &Path, e: Errno) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{}: {e}", what.display()))
}

/// The layer's directory, the root every path in the layer resolves in.
struct Root {
    fd: OwnedFd,
}

const DIR: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl Root {
    fn open(dest: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(dest)?;
        let fd = rustix::fs::open(dest, DIR, Mode::empty()).map_err(|e| context(dest, e))?;
        Ok(Root { fd })
    }

    /// The existing directory `rel`, symlinks on the way resolved as if
    /// the root were `/`.
    fn lookup(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        rustix::fs::openat2(&self.fd, path, DIR, Mode::empty(), resolve)
    }

    /// The directory `rel`, made (0755, owned by root) where missing, as
    /// tar does for entries whose directories the layer does not list.
    fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.lookup(rel) {
            Err(Errno::NOENT) if !rel.as_os_str().is_empty() => {
                let (parent, name) = split(rel)?;
                let parent = self.dir(parent)?;
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(context(rel, e)),
                }
                // What is there now must be that directory, not a symlink
                // (one pointing out of the layer made the lookup fail).
                child_dir(&parent, name).map_err(|e| {
                    let link = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
                    if link {
                        invalid(format!(
                            "layer refused: {} is a symlink that leads out of the layer",
                            rel.display()
                        ))
                    } else {
                        context(rel, e)
                    }
                })
            }
            other => other.map_err(|e| context(rel, e)),
        }
    }
}

/// The directory `name` right in `parent`, never through a symlink.
fn child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
    rustix::fs::openat2(parent, name, DIR | OFlags::NOFOLLOW, Mode::empty(), resolve)
}

/// Removes whatever `name` in `parent` is (an empty directory too), so
/// that the entry replacing it is created fresh rather than written through.
fn remove(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
            .map_err(|e| context(Path::new(name), e)),
        Err(e) => Err(context(Path::new(name), e)),
    }
}

/// Ownership, mode, extended attributes and mtime from the entry's header.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let meta = Meta {
            uid: h.uid()? as u32,
            gid: h.gid()? as u32,
            mode: h.mode()? & 0o7777,
            mtime: h.mtime()? as i64,
            xattrs: Vec::new(),
        };
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let Ok(key) = ext.key()
                    && let Some(name) = key.strip_prefix(XATTR_PREFIX)
                {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta { xattrs, ..meta })
    }

    fn times(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    /// Applies everything to an open file or directory (owner before mode:
    /// a chown clears set-user-ID bits).
    fn apply(&self, fd: BorrowedFd<'_>, what: &Path) -> io::Result<()> {
        let err = |e| context(what, e);
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(err)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode)).map_err(err)?;
        for (name, value) in &self.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                // A namespace this filesystem or user cannot set.
                Err(e @ (Errno::OPNOTSUPP | Errno::PERM)) => {
                    tracing::debug!("{}: xattr {name} not set: {e}", what.display())
                }
                Err(e) => return Err(err(e)),
            }
        }
        rustix::fs::futimens(fd, &self.times()).map_err(err)
    }
}

/// Unpacks a (possibly gzip-compressed) layer tar into `dest`.
pub fn unpack(layer: impl Read, gzip: bool, dest: &Path) -> io::Result<()> {
    let root = Root::open(dest)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(layer))
    } else {
        Box::new(layer)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = relative(&entry.path()?)?;
        if path.as_os_str().is_empty() {
            // The layer's own root (`./`): its directory already exists.
            continue;
        }
        let (dir, name) = split(&path)?;
        let file_name = name.to_string_lossy();
        if file_name == OPAQUE {
            let dir_fd = root.dir(dir)?;
            rustix::fs::fsetxattr(&dir_fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| context(dir, e))?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = root.dir(dir)?;
            let hidden = OsStr::new(hidden);
            remove(&parent, hidden)?;
            rustix::fs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| context(&path, e))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::Char | EntryType::Block) {
            tracing::debug!("layer device node {} not created", path.display());
            continue;
        }
        let meta = Meta::of(&mut entry)?;
        match kind {
            EntryType::Directory => {
                let parent = root.dir(dir)?;
                let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW);
                let is_dir =
                    stat.is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
                if !is_dir {
                    remove(&parent, name)?;
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| context(&path, e))?;
                }
                let fd = child_dir(&parent, name).map_err(|e| context(&path, e))?;
                meta.apply(fd.as_fd(), &path)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let parent = root.dir(dir)?;
                remove(&parent, name)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| context(&path, e))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file)?;
                meta.apply(file.as_fd(), &path)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| invalid(format!("symlink {} has no target", path.display())))?
                    .into_owned();
                let parent = root.dir(dir)?;
                remove(&parent, name)?;
                // The target is kept as written: it is only ever followed
                // inside the container, or here as if the layer were `/`.
                rustix::fs::symlinkat(&target, &parent, name).map_err(|e| context(&path, e))?;
                let nofollow = AtFlags::SYMLINK_NOFOLLOW;
                let owner = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
                rustix::fs::chownat(&parent, name, owner.0, owner.1, nofollow)
                    .map_err(|e| context(&path, e))?;
                rustix::fs::utimensat(&parent, name, &meta.times(), nofollow)
                    .map_err(|e| context(&path, e))?;
            }
            EntryType::Link => {
                let target = entry.link_name()?.ok_or_else(|| {
                    invalid(format!("hard link {} has no target", path.display()))
                })?;
                let target = relative(&target)?;
                let (target_dir, target_name) = split(&target)?;
                let from = root.lookup(target_dir).map_err(|e| context(&target, e))?;
                let parent = root.dir(dir)?;
                remove(&parent, name)?;
                // Without AT_SYMLINK_FOLLOW a link to a symlink links the
                // symlink itself, never what it points at.
                rustix::fs::linkat(&from, target_name, &parent, name, AtFlags::empty())
                    .map_err(|e| context(&target, e))?;
            }
            EntryType::Fifo => {
                let parent = root.dir(dir)?;
                remove(&parent, name)?;
                let mode = Mode::from_raw_mode(meta.mode);
                rustix::fs::mknodat(&parent, name, FileType::Fifo, mode, 0)
                    .map_err(|e| context(&path, e))?;
            }
            other => {
                tracing::debug!("layer entry {} of type {other:?} skipped", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// A layer of raw entries: names are written as given (`..` too), as a
    /// hostile image would.
    #[derive(Default)]
    struct Layer {
        b: Option<tar::Builder<Vec<u8>>>,
    }

    impl Layer {
        fn add(mut self, kind: EntryType, path: &str, link: Option<&str>, data: &[u8]) -> Self {
            let b = self.b.get_or_insert_with(|| tar::Builder::new(Vec::new()));
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, data).unwrap();
            self
        }

        fn file(self, path: &str, data: &[u8]) -> Self {
            self.add(EntryType::Regular, path, None, data)
        }

        fn symlink(self, path: &str, to: &str) -> Self {
            self.add(EntryType::Symlink, path, Some(to), b"")
        }

        fn unpack(mut self, dest: &Path) -> io::Result<()> {
            let bytes = self.b.take().unwrap().into_inner().unwrap();
            unpack(&bytes[..], false, dest)
        }
    }

    /// A directory standing for the host, with a file a layer must not touch.
    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("victim"), b"host data").unwrap();
            Host { dir }
        }

        fn path(&self) -> String {
            self.dir.path().display().to_string()
        }

        /// The victim is still the same lone regular file, and nothing was added.
        fn unchanged(&self) {
            let victim = self.dir.path().join("victim");
            let meta = fs::symlink_metadata(&victim).unwrap();
            assert!(meta.is_file(), "victim replaced: {meta:?}");
            assert_eq!(meta.nlink(), 1, "victim hard-linked");
            assert_eq!(fs::read(&victim).unwrap(), b"host data");
            let names: Vec<_> = fs::read_dir(self.dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "files added to the host: {names:?}");
        }
    }

    #[test]
    fn a_legitimate_layer_unpacks_files_dirs_links_and_whiteouts() {
        let dest = tempfile::tempdir().unwrap();
        Layer::default()
            .add(EntryType::Directory, "./", None, b"")
            .add(EntryType::Directory, "etc/", None, b"")
            .file("etc/hostname", b"box\n")
            .file("usr/lib/libc.so", b"elf")
            .symlink("lib", "usr/lib")
            .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
            .add(
                EntryType::Link,
                "usr/lib/libc.so.6",
                Some("usr/lib/libc.so"),
                b"",
            )
            .file("etc/.wh.motd", b"")
            .file("var/.wh..wh..opq", b"")
            .add(EntryType::Fifo, "run/initctl", None, b"")
            .unpack(dest.path())
            .unwrap();
        let d = dest.path();
        assert_eq!(fs::read(d.join("etc/hostname")).unwrap(), b"box\n");
        assert_eq!(fs::read(d.join("lib/libc.so")).unwrap(), b"elf");
        assert_eq!(
            fs::read_link(d.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert_eq!(
            fs::metadata(d.join("usr/lib/libc.so.6")).unwrap().nlink(),
            2
        );
        assert!(
            fs::symlink_metadata(d.join("etc/motd"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert!(
            fs::symlink_metadata(d.join("run/initctl"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(
            fs::metadata(d.join("etc/hostname")).unwrap().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn a_whiteout_through_a_symlink_out_of_the_layer_removes_nothing_on_the_host() {
        for climb in ["", "../../../../../.."] {
            let host = Host::new();
            let to = format!("{climb}{}", host.path());
            let dest = tempfile::tempdir().unwrap();
            let result = Layer::default()
                .symlink("x", &to)
                .file("x/.wh.victim", b"")
                .unpack(dest.path());
            assert!(result.is_err(), "x -> {to}: {result:?}");
            host.unchanged();
        }
    }

    #[test]
    fn an_opaque_marker_through_a_symlink_is_refused() {
        let host = Host::new();
        let dest = tempfile::tempdir().unwrap();
        let result = Layer::default()
            .symlink("x", &host.path())
            .file("x/.wh..wh..opq", b"")
            .unpack(dest.path());
        assert!(result.is_err());
        host.unchanged();
    }

    #[test]
    fn a_file_over_a_symlink_replaces_the_link_not_its_target() {
        let host = Host::new();
        let dest = tempfile::tempdir().unwrap();
        Layer::default()
            .symlink("x", &format!("{}/victim", host.path()))
            .file("x", b"pwned")
            .unpack(dest.path())
            .unwrap();
        host.unchanged();
        assert_eq!(fs::read(dest.path().join("x")).unwrap(), b"pwned");
    }

    #[test]
    fn a_file_inside_a_symlinked_directory_out_of_the_layer_is_refused() {
        let host = Host::new();
        let dest = tempfile::tempdir().unwrap();
        let result = Layer::default()
            .symlink("d", &host.path())
            .file("d/evil", b"pwned")
            .unpack(dest.path());
        assert!(result.is_err());
        host.unchanged();
    }

    #[test]
    fn hard_links_to_host_files_are_refused() {
        for climb in ["", "../../../.."] {
            let host = Host::new();
            let to = format!("{climb}{}/victim", host.path());
            let dest = tempfile::tempdir().unwrap();
            let result = Layer::default()
                .add(EntryType::Link, "h", Some(&to), b"")
                .unpack(dest.path());
            assert!(result.is_err(), "h => {to}: {result:?}");
            host.unchanged();
        }
    }

    #[test]
    fn a_hard_link_to_a_symlink_links_the_symlink_itself() {
        let host = Host::new();
        let dest = tempfile::tempdir().unwrap();
        Layer::default()
            .symlink("s", &format!("{}/victim", host.path()))
            .add(EntryType::Link, "h", Some("s"), b"")
            .unpack(dest.path())
            .unwrap();
        host.unchanged();
        assert!(
            fs::symlink_metadata(dest.path().join("h"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn names_with_dot_dot_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dest = outside.path().join("layer");
        let result = Layer::default().file("../escaped", b"x").unpack(&dest);
        assert!(result.is_err());
        assert!(!outside.path().join("escaped").exists());
    }

    #[test]
    fn device_nodes_are_not_created() {
        let dest = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_path("dev/sda").unwrap();
        h.set_entry_type(EntryType::Block);
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
        h.set_size(0);
        h.set_mode(0o666);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        unpack(&bytes[..], false, dest.path()).unwrap();
        assert!(!dest.path().join("dev/sda").exists());
    }
}
