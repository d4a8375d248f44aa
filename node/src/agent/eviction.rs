//! Local ephemeral storage limits, enforced as kubelet's eviction manager
//! does: a pod whose disk-backed emptyDir outgrows its `sizeLimit`, whose
//! containers' writable layers, logs and emptyDirs together outgrow the sum
//! of their `ephemeral-storage` limits, or one of whose containers outgrows
//! its own, is evicted (phase `Failed`, reason `Evicted`, an event naming
//! the limit). A memory-backed emptyDir is a tmpfs sized to its limit and
//! charged to the pod's memory cgroup: the kernel bounds it.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use peapod_common::quantity;

use super::sandbox::PodDir;

/// Past this many files a directory counts as what was measured so far:
/// the walk stays bounded whatever a container makes.
const MAX_ENTRIES: usize = 1_000_000;

/// Bytes on disk, by emptyDir volume and by container (writable layer and
/// logs).
#[derive(Debug, Default)]
pub struct Usage {
    pub volumes: BTreeMap<String, u64>,
    pub containers: BTreeMap<String, u64>,
}

fn bytes(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<u64> {
    quantity::value(&q.0).and_then(|v| u64::try_from(v).ok())
}

/// The disk-backed emptyDir volumes of `pod`, with their size limits.
fn disk_empty_dirs(pod: &Pod) -> impl Iterator<Item = (&Volume, Option<&str>)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let e = v.empty_dir.as_ref()?;
            (e.medium.as_deref() != Some("Memory"))
                .then(|| (v, e.size_limit.as_ref().map(|q| q.0.as_str())))
        })
}

fn storage_limit(c: &Container) -> Option<&str> {
    let limits = c.resources.as_ref()?.limits.as_ref()?;
    limits.get("ephemeral-storage").map(|q| q.0.as_str())
}

fn app_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.containers.iter())
}

/// Whether `pod` sets any limit this module enforces (only such pods are
/// measured).
pub fn has_limits(pod: &Pod) -> bool {
    disk_empty_dirs(pod).any(|(_, limit)| limit.is_some())
        || app_containers(pod).any(|c| storage_limit(c).is_some())
}

/// Why `pod` must be evicted, in kubelet's words, if it must.
pub fn exceeded(pod: &Pod, usage: &Usage) -> Option<String> {
    for (v, limit) in disk_empty_dirs(pod) {
        let (Some(limit), Some(used)) = (limit, usage.volumes.get(&v.name)) else {
            continue;
        };
        if quantity::value(limit).is_some_and(|l| *used > l.max(0) as u64) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {limit:?}.",
                v.name
            ));
        }
    }
    let limits: Vec<(&Container, &str)> = app_containers(pod)
        .filter_map(|c| Some((c, storage_limit(c)?)))
        .collect();
    if !limits.is_empty() {
        let total: u64 = limits
            .iter()
            .filter_map(|(c, _)| {
                bytes(
                    c.resources
                        .as_ref()?
                        .limits
                        .as_ref()?
                        .get("ephemeral-storage")?,
                )
            })
            .fold(0, u64::saturating_add);
        let used = usage
            .containers
            .values()
            .chain(disk_empty_dirs(pod).filter_map(|(v, _)| usage.volumes.get(&v.name)))
            .fold(0u64, |a, b| a.saturating_add(*b));
        if used > total {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {total}."
            ));
        }
    }
    for (c, limit) in limits {
        let used = usage.containers.get(&c.name).copied().unwrap_or(0);
        if quantity::value(limit).is_some_and(|l| used > l.max(0) as u64) {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {limit:?}.",
                c.name
            ));
        }
    }
    None
}

/// What `pod`'s emptyDirs and containers hold on disk now; `runs` names
/// each container's current run. Blocking: it walks directories.
pub fn measure(pod: &Pod, dir: &PodDir, runs: &[(String, Option<String>)]) -> Usage {
    let mut usage = Usage::default();
    for (v, _) in disk_empty_dirs(pod) {
        let path = dir.volumes().join("empty-dir").join(&v.name);
        usage.volumes.insert(v.name.clone(), disk_usage(&path));
    }
    for (name, run) in runs {
        let layer = run
            .as_ref()
            .map_or(0, |id| disk_usage(&dir.container(id).join("upper")));
        let logs = dir.log(name, 0);
        let logs = logs.parent().map_or(0, disk_usage);
        usage.containers.insert(name.clone(), layer + logs);
    }
    usage
}

/// Empties the disk-backed emptyDirs of an evicted pod: the space they
/// took is what got it evicted. The directories stay for the pod's files.
pub fn free_empty_dirs(pod: &Pod, dir: &PodDir) {
    for (v, _) in disk_empty_dirs(pod) {
        let path = dir.volumes().join("empty-dir").join(&v.name);
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let p = entry.path();
            // Not followed: a link in the volume is removed, not its target.
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
                _ => std::fs::remove_file(&p),
            };
        }
    }
}

/// Bytes the files under `path` take on its file system (as `du`: blocks,
/// hard links once, no symlink followed, no other mount entered).
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .same_file_system(true)
        .into_iter()
        .filter_map(Result::ok)
        .take(MAX_ENTRIES)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.nlink() < 2 || m.is_dir() || seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(&format!("apiVersion: v1\nkind: Pod\n{yaml}")).unwrap()
    }

    const POD: &str = r#"
spec:
  volumes:
  - {name: scratch, emptyDir: {sizeLimit: 1Mi}}
  - {name: cache, emptyDir: {}}
  - {name: shm, emptyDir: {medium: Memory, sizeLimit: 1Ki}}
  containers:
  - name: a
    image: x
    resources: {limits: {ephemeral-storage: 2Mi}}
  - name: b
    image: x
    resources: {limits: {ephemeral-storage: 3Mi}}
"#;

    fn usage(volumes: &[(&str, u64)], containers: &[(&str, u64)]) -> Usage {
        let own = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Usage {
            volumes: own(volumes),
            containers: own(containers),
        }
    }

    #[test]
    fn each_limit_evicts_in_kubelets_words() {
        const MI: u64 = 1 << 20;
        let p = pod(POD);
        assert!(has_limits(&p));
        let cases: &[(Usage, Option<&str>)] = &[
            (
                usage(&[("scratch", MI), ("cache", MI)], &[("a", MI), ("b", MI)]),
                None,
            ),
            (
                usage(&[("scratch", MI + 1)], &[]),
                Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\"."),
            ),
            (
                usage(&[("cache", 4 * MI)], &[("a", MI), ("b", MI)]),
                Some(
                    "Pod ephemeral local storage usage exceeds the total limit of containers 5242880.",
                ),
            ),
            (
                usage(&[], &[("a", 2 * MI + 1)]),
                Some("Container a exceeded its local ephemeral storage limit \"2Mi\"."),
            ),
            // A memory-backed emptyDir is the kernel's to bound, not measured.
            (usage(&[("shm", 10 * MI)], &[]), None),
        ];
        // Limits near the largest quantity add up without overflowing.
        let containers: String = ["a", "b", "c"]
            .iter()
            .map(|n| format!("  - {{name: {n}, image: x, resources: {{limits: {{ephemeral-storage: 7Ei}}}}}}\n"))
            .collect();
        let huge = pod(&format!("spec:\n  containers:\n{containers}"));
        assert_eq!(exceeded(&huge, &usage(&[], &[("a", MI)])), None);
        for (u, expected) in cases {
            assert_eq!(exceeded(&p, u).as_deref(), *expected, "{u:?}");
        }
        assert!(!has_limits(&pod(
            "\nspec: {containers: [{name: a, image: x}], volumes: [{name: v, emptyDir: {}}]}"
        )));
    }

    #[test]
    fn disk_usage_counts_blocks_once_and_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![1u8; 256 << 10]).unwrap();
        std::fs::hard_link(&big, dir.path().join("again")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("huge"), vec![1u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let used = disk_usage(dir.path());
        assert!((256 << 10..512 << 10).contains(&used), "{used}");
    }
}
