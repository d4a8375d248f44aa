//! Unpacking image layers into directories that overlayfs stacks: OCI
//! whiteouts (`.wh.<name>`, `.wh..wh..opq`) become overlay whiteouts (a 0/0
//! character device) and opaque directories (`trusted.overlay.opaque=y`).

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Where an entry lands under `dest`, refusing paths that escape it.
fn target(dest: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut out = dest.to_path_buf();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("layer entry {} escapes the layer", path.display()),
                ));
            }
        }
    }
    Ok(out)
}

fn mknod_whiteout(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod only reads it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let name = CString::new("trusted.overlay.opaque").expect("static");
    // SAFETY: both strings are valid and NUL-terminated; the value is a
    // 1-byte buffer that outlives the call.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unpacks a (possibly gzip-compressed) layer tar into `dest`.
pub fn unpack(layer: impl Read, gzip: bool, dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(layer))
    } else {
        Box::new(layer)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some(OPAQUE) => {
                let dir = target(dest, path.parent().unwrap_or(Path::new("")))?;
                fs::create_dir_all(&dir)?;
                set_opaque(&dir)?;
            }
            Some(n) if n.starts_with(WHITEOUT_PREFIX) => {
                let hidden = path.with_file_name(&n[WHITEOUT_PREFIX.len()..]);
                let at = target(dest, &hidden)?;
                if let Some(parent) = at.parent() {
                    fs::create_dir_all(parent)?;
                }
                let _ = fs::remove_file(&at);
                mknod_whiteout(&at)?;
            }
            _ => {
                target(dest, &path)?;
                entry.unpack_in(dest)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn files_unpack_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = layer(&[("etc/hostname", b"box\n"), ("bin/sh", b"#!")]);
        unpack(&t[..], false, dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("etc/hostname")).unwrap(), b"box\n");
        assert!(target(dir.path(), Path::new("../../etc/passwd")).is_err());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let t = layer(&[("etc/.wh.motd", b"")]);
        unpack(&t[..], false, dir.path()).unwrap();
        let meta = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
        assert!(meta.file_type().is_char_device());
    }
}
