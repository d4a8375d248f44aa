//! A pod's volumes, made ready on the node before its containers start:
//! emptyDir (on disk, or tmpfs for `medium: Memory`), hostPath, configMap,
//! secret (always on tmpfs, never written to disk), downwardAPI, projected,
//! and persistentVolumeClaim (through the PersistentVolume's local path).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use kube::ResourceExt;
use nix::mount::{MsFlags, mount};

use super::atomic_dir;
use super::env::{Addresses, Sources, field};
use super::sandbox::PodDir;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("configmap \"{0}\" not found")]
    MissingConfigMap(String),
    #[error("secret \"{0}\" not found")]
    MissingSecret(String),
    #[error("hostPath type check failed: {path} is not a {kind}")]
    HostPathType { path: String, kind: String },
    #[error("persistentvolumeclaim \"{0}\" is not bound to a local volume yet")]
    Unbound(String),
    #[error("volume {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Token(String),
    #[error("volume {0} has a type this node does not support")]
    Unsupported(String),
}

/// Host directories (or files) of a pod's volumes, by volume name.
pub type Prepared = HashMap<String, PathBuf>;

/// Where each PVC a pod uses lives on this node (from its bound PV).
pub type ClaimPaths = HashMap<String, Option<PathBuf>>;

fn io(name: &str) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        name: name.to_string(),
        source,
    }
}

fn tmpfs(dir: &Path, size: Option<i64>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mountpoint(dir) {
        return Ok(());
    }
    let options = size.map(|s| format!("size={s}"));
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        options.as_deref(),
    )
    .map_err(std::io::Error::from)
}

/// Whether `path` is a mount point (per this process's mount table).
pub fn is_mountpoint(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_ref()))
}

/// Writes `files` (relative path → content, mode) into `dir`, replacing
/// what was there at once (see [`atomic_dir`]).
fn write_files(dir: &Path, files: &[atomic_dir::File]) -> std::io::Result<()> {
    atomic_dir::write(dir, files).map(|_| ())
}

/// Files for `data` (all keys, or just `items`).
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
) -> Vec<atomic_dir::File> {
    match items {
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect(),
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let v = data.get(&i.key)?;
                Some((
                    i.path.clone(),
                    v.clone(),
                    i.mode.map_or(default_mode, |m| m as u32),
                ))
            })
            .collect(),
    }
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    addrs: &Addresses,
) -> Vec<atomic_dir::File> {
    let quoted = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    items
        .iter()
        .filter_map(|i| {
            let path = i.field_ref.as_ref()?.field_path.as_str();
            let value = match path {
                "metadata.labels" => quoted(pod.labels()),
                "metadata.annotations" => quoted(pod.annotations()),
                other => field(pod, other, addrs)?,
            };
            Some((
                i.path.clone(),
                value.into_bytes(),
                i.mode.map_or(default_mode, |m| m as u32),
            ))
        })
        .collect()
}

fn config_map_data(sources: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    sources.config_maps.get(name).cloned().flatten()
}

fn secret_data(sources: &Sources, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    sources.secrets.get(name).cloned().flatten()
}

fn mode(m: Option<i32>) -> u32 {
    m.map_or(0o644, |m| m as u32)
}

/// Makes every volume of `pod` ready; returns their host paths.
pub fn prepare(
    pod: &Pod,
    dir: &PodDir,
    sources: &Sources,
    claims: &ClaimPaths,
    addrs: &Addresses,
) -> Result<Prepared, VolumeError> {
    let mut out = Prepared::new();
    let volumes: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        let name = v.name.as_str();
        let path = prepare_one(pod, dir, v, sources, claims, addrs)?;
        out.insert(name.to_string(), path);
    }
    Ok(out)
}

/// Whether `v` holds API data or pod fields that can change while the
/// pod runs (and so is refreshed).
fn refreshable(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// Whether the volume `name` of `pod` is written by the agent (ConfigMap,
/// Secret, downward API, projected): containers get it read-only, as on
/// Kubernetes, so none can plant a link the agent's next refresh would
/// write through.
pub fn agent_written(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.name == name && refreshable(v)))
}

/// Whether any volume of `pod` is refreshed while it runs.
pub fn any_refreshable(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(refreshable))
}

/// Brings the ConfigMap, Secret, downward API and projected volumes of a
/// running pod up to date. A volume whose source is gone keeps what it
/// had (as on Kubernetes); the first such error is returned after every
/// other volume was refreshed.
pub fn refresh(
    pod: &Pod,
    dir: &PodDir,
    sources: &Sources,
    addrs: &Addresses,
) -> Result<(), VolumeError> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut first_error = None;
    for v in volumes.into_iter().flatten().filter(|v| refreshable(v)) {
        if let Err(e) = prepare_one(pod, dir, v, sources, &ClaimPaths::new(), addrs) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn prepare_one(
    pod: &Pod,
    dir: &PodDir,
    v: &Volume,
    sources: &Sources,
    claims: &ClaimPaths,
    addrs: &Addresses,
) -> Result<PathBuf, VolumeError> {
    let name = v.name.as_str();
    let base = dir.volumes();
    if let Some(e) = &v.empty_dir {
        let path = base.join("empty-dir").join(name);
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| peapod_common::quantity::value(&q.0));
            tmpfs(&path, size).map_err(io(name))?;
        } else {
            std::fs::create_dir_all(&path).map_err(io(name))?;
        }
        // Writable by any user the containers run as, like the kubelet's.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(io(name))?;
        return Ok(path);
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        let kind = h.type_.as_deref().unwrap_or("");
        let check = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(VolumeError::HostPathType {
                    path: h.path.clone(),
                    kind: kind.to_string(),
                })
            }
        };
        match kind {
            "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(io(name))?,
            "FileOrCreate" if !path.exists() => {
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p).map_err(io(name))?;
                }
                std::fs::write(&path, b"").map_err(io(name))?;
            }
            "Directory" => check(path.is_dir())?,
            "File" => check(path.is_file())?,
            "Socket" | "CharDevice" | "BlockDevice" => check(path.exists())?,
            _ => {}
        }
        return Ok(path);
    }
    if let Some(c) = &v.config_map {
        let path = base.join("configmap").join(name);
        let data = match config_map_data(sources, &c.name) {
            Some(d) => d,
            None if c.optional.unwrap_or(false) => BTreeMap::new(),
            None => return Err(VolumeError::MissingConfigMap(c.name.clone())),
        };
        write_files(
            &path,
            &key_files(&data, c.items.as_ref(), mode(c.default_mode)),
        )
        .map_err(io(name))?;
        return Ok(path);
    }
    if let Some(s) = &v.secret {
        let path = base.join("secret").join(name);
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let data = match secret_data(sources, &secret_name) {
            Some(d) => d,
            None if s.optional.unwrap_or(false) => BTreeMap::new(),
            None => return Err(VolumeError::MissingSecret(secret_name)),
        };
        tmpfs(&path, None).map_err(io(name))?;
        write_files(
            &path,
            &key_files(&data, s.items.as_ref(), mode(s.default_mode)),
        )
        .map_err(io(name))?;
        return Ok(path);
    }
    if let Some(d) = &v.downward_api {
        let path = base.join("downward-api").join(name);
        let files = downward_files(
            pod,
            d.items.as_deref().unwrap_or(&[]),
            mode(d.default_mode),
            addrs,
        );
        write_files(&path, &files).map_err(io(name))?;
        return Ok(path);
    }
    if let Some(p) = &v.projected {
        let path = base.join("projected").join(name);
        let default_mode = mode(p.default_mode);
        let mut files = Vec::new();
        for s in p.sources.iter().flatten() {
            if let Some(c) = &s.config_map {
                match config_map_data(sources, &c.name) {
                    Some(d) => files.extend(key_files(&d, c.items.as_ref(), default_mode)),
                    None if c.optional.unwrap_or(false) => {}
                    None => return Err(VolumeError::MissingConfigMap(c.name.clone())),
                }
            }
            if let Some(c) = &s.secret {
                match secret_data(sources, &c.name) {
                    Some(d) => files.extend(key_files(&d, c.items.as_ref(), default_mode)),
                    None if c.optional.unwrap_or(false) => {}
                    None => return Err(VolumeError::MissingSecret(c.name.clone())),
                }
            }
            if let Some(t) = &s.service_account_token {
                let token = sources
                    .tokens
                    .get(&super::sa_token::key(t))
                    .map_err(VolumeError::Token)?;
                files.push((t.path.clone(), token.to_vec(), default_mode));
            }
            if let Some(d) = &s.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or(&[]),
                    default_mode,
                    addrs,
                ));
            }
        }
        // Projections may carry secrets: keep them off the disk too.
        tmpfs(&path, None).map_err(io(name))?;
        write_files(&path, &files).map_err(io(name))?;
        return Ok(path);
    }
    if let Some(c) = &v.persistent_volume_claim {
        return match claims.get(&c.claim_name).cloned().flatten() {
            Some(path) => {
                std::fs::create_dir_all(&path).map_err(io(name))?;
                Ok(path)
            }
            None => Err(VolumeError::Unbound(c.claim_name.clone())),
        };
    }
    Err(VolumeError::Unsupported(name.to_string()))
}

/// Unmounts every mount under `dir` (deepest first): rootfs overlays and
/// tmpfs volumes, before the pod's directory is removed.
pub fn unmount_all_under(dir: &Path) {
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Err(e) = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("unmounting {p}: {e}");
        }
    }
}
