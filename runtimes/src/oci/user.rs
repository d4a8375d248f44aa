//! The user a container runs as: the image's `User` (`name`, `uid`,
//! `name:group`, `uid:gid`) resolved against the image's `/etc/passwd` and
//! `/etc/group`, overridden by `runAsUser` / `runAsGroup`.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups the user is a member of.
    pub additional_gids: Vec<u32>,
}

fn entries(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(rootfs.join("etc").join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(String::from).collect())
        .collect()
}

/// Resolves the identity for `image_user` (may be empty) with the pod's
/// overrides, against the files in `rootfs`.
pub fn resolve(
    rootfs: &Path,
    image_user: &str,
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
) -> Result<Identity, UserError> {
    let passwd = entries(rootfs, "passwd");
    let groups = entries(rootfs, "group");
    let (user, group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let by_name = |name: &str| {
        passwd
            .iter()
            .find(|e| e.first().map(String::as_str) == Some(name))
    };
    let by_uid = |uid: u32| {
        passwd
            .iter()
            .find(|e| e.get(2).and_then(|u| u.parse().ok()) == Some(uid))
    };
    let (mut uid, mut gid, mut name) = (0u32, None::<u32>, Some("root".to_string()));
    if !user.is_empty() {
        if let Ok(n) = user.parse::<u32>() {
            uid = n;
            name = by_uid(n).and_then(|e| e.first().cloned());
            gid = by_uid(n).and_then(|e| e.get(3)?.parse().ok());
        } else {
            let e = by_name(user).ok_or_else(|| UserError::NoUser(user.into()))?;
            uid = e.get(2).and_then(|u| u.parse().ok()).unwrap_or(0);
            gid = e.get(3).and_then(|g| g.parse().ok());
            name = Some(user.to_string());
        }
    }
    if let Some(u) = run_as_user {
        uid = u;
        name = by_uid(u).and_then(|e| e.first().cloned());
        gid = by_uid(u).and_then(|e| e.get(3)?.parse().ok());
    }
    if let Some(g) = group {
        gid = Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.into()))?,
        });
    }
    if let Some(g) = run_as_group {
        gid = Some(g);
    }
    let gid = gid.unwrap_or(0);
    let additional_gids = name
        .map(|n| {
            groups
                .iter()
                .filter(|e| {
                    e.get(3)
                        .is_some_and(|members| members.split(',').any(|m| m == n))
                })
                .filter_map(|e| e.get(2)?.parse().ok())
                .filter(|g| *g != gid)
                .collect()
        })
        .unwrap_or_default();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nweb:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nweb:x:1000:\nwheel:x:10:web\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_numbers_and_overrides_resolve() {
        let r = rootfs();
        let id = resolve(r.path(), "", None, None).unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
        let id = resolve(r.path(), "web", None, None).unwrap();
        assert_eq!((id.uid, id.gid, id.additional_gids), (1000, 1000, vec![10]));
        let id = resolve(r.path(), "nobody", Some(1000), Some(5)).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 5));
        let id = resolve(r.path(), "4242:wheel", None, None).unwrap();
        assert_eq!((id.uid, id.gid), (4242, 10));
        assert!(resolve(r.path(), "ghost", None, None).is_err());
    }
}
