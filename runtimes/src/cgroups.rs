//! The host's cgroups as Peapod uses them, on either layout: cgroup v1
//! (alone, or "hybrid" beside a cgroup2 tree without controllers) or the
//! v2 unified hierarchy. libcontainer makes and limits each container's
//! cgroup; this module owns the pod level above them (its pod-wide pids
//! limit, its removal) and reads what containers' cgroups report.
//!
//! Paths given here are relative to each hierarchy (`peapod/pod<uid>`),
//! as in the OCI spec's `cgroupsPath`.

use std::io;
use std::path::{Path, PathBuf};

/// Where the hierarchies are mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// The two layouts Peapod meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A hierarchy per controller under `/sys/fs/cgroup/<controller>`
    /// (also the hybrid layout: its cgroup2 tree has no controllers).
    V1,
    /// One hierarchy at `/sys/fs/cgroup` with every controller.
    Unified,
}

/// The host's layout: unified when `/sys/fs/cgroup` itself is cgroup2.
pub fn layout() -> Layout {
    match nix::sys::statfs::statfs(ROOT) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Layout::Unified,
        _ => Layout::V1,
    }
}

/// Limits that apply to a pod as a whole, set on its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodLimits {
    /// The most processes and threads the pod may have (the kubelet's
    /// `podPidsLimit`); `None` for no limit.
    pub pids: Option<u64>,
}

/// The cgroup hierarchies of one layout, rooted at `root` (the host's
/// `/sys/fs/cgroup`, or a directory standing in for it in tests).
#[derive(Clone, Debug)]
pub struct Hierarchies {
    pub layout: Layout,
    pub root: PathBuf,
}

impl Hierarchies {
    /// The host's.
    pub fn host() -> Hierarchies {
        Hierarchies {
            layout: layout(),
            root: PathBuf::from(ROOT),
        }
    }

    /// The directory of `path` in the hierarchy holding `controller`.
    pub fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let path = path.trim_start_matches('/');
        match self.layout {
            Layout::V1 => self.root.join(controller).join(path),
            Layout::Unified => self.root.join(path),
        }
    }

    /// Every directory `path` may have: one per v1 hierarchy, or one.
    fn all_dirs(&self, path: &str) -> Vec<PathBuf> {
        let path = path.trim_start_matches('/');
        match self.layout {
            Layout::V1 => std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|h| h.path().is_dir())
                .map(|h| h.path().join(path))
                .collect(),
            Layout::Unified => vec![self.root.join(path)],
        }
    }

    /// Makes the pod's cgroup at `path` and sets `limits` on it. On the
    /// unified layout the controllers the limits need are enabled for the
    /// children of every ancestor first (libcontainer does the same for
    /// the containers' cgroups below, later).
    pub fn create_pod(&self, path: &str, limits: &PodLimits) -> io::Result<()> {
        let Some(pids) = limits.pids else {
            return Ok(());
        };
        let dir = self.dir("pids", path);
        if self.layout == Layout::Unified {
            let mut at = self.root.clone();
            for part in Path::new(path.trim_start_matches('/')).components() {
                enable(&at, "pids")?;
                at.push(part);
                make_dir(&at)?;
            }
        } else {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join("pids.max"), pids.to_string())
    }

    /// Removes the cgroup at `path` and what is left below it (container
    /// leaves of a crashed run), in every hierarchy. Quiet when absent.
    pub fn remove(&self, path: &str) {
        for dir in self.all_dirs(path) {
            remove_tree(&dir);
        }
    }

    /// Removes the cgroup at `path` where it is empty (the parent of
    /// every pod's, which other Peapods on the host may still use).
    pub fn remove_if_empty(&self, path: &str) {
        for dir in self.all_dirs(path) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Whether the memory controller of the cgroup at `path` OOM-killed a
    /// process (v1 `memory.oom_control`, v2 `memory.events`).
    pub fn oom_killed(&self, path: &str) -> bool {
        let file = match self.layout {
            Layout::V1 => "memory.oom_control",
            Layout::Unified => "memory.events",
        };
        field(&self.dir("memory", path).join(file), "oom_kill").is_some_and(|n| n > 0)
    }

    /// CPU nanoseconds used and working-set bytes (usage less inactive
    /// file pages, as the kubelet reports) of the cgroup at `path`.
    pub fn usage(&self, path: &str) -> Option<(u64, u64)> {
        match self.layout {
            Layout::V1 => {
                let cpu = read_u64(&self.dir("cpuacct", path).join("cpuacct.usage"))?;
                let memory = self.dir("memory", path);
                let used = read_u64(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
                let inactive = field(&memory.join("memory.stat"), "total_inactive_file");
                Some((cpu, used.saturating_sub(inactive.unwrap_or(0))))
            }
            Layout::Unified => {
                let dir = self.dir("cpu", path);
                let cpu = field(&dir.join("cpu.stat"), "usage_usec")? * 1000;
                let used = read_u64(&dir.join("memory.current")).unwrap_or(0);
                let inactive = field(&dir.join("memory.stat"), "inactive_file");
                Some((cpu, used.saturating_sub(inactive.unwrap_or(0))))
            }
        }
    }
}

/// Enables `controller` for the children of the cgroup `dir` (v2).
fn enable(dir: &Path, controller: &str) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control)?;
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    std::fs::write(&control, format!("+{controller}"))
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Removes a cgroup directory and the ones below it, deepest first
/// (cgroup directories go with `rmdir`, their files with them).
fn remove_tree(dir: &Path) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&child.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!("removing cgroup {}: {e}", dir.display());
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `name value` line of a flat-keyed cgroup file.
fn field(path: &Path, name: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(layout: Layout) -> (tempfile::TempDir, Hierarchies) {
        let dir = tempfile::tempdir().unwrap();
        let h = Hierarchies {
            layout,
            root: dir.path().to_path_buf(),
        };
        (dir, h)
    }

    #[test]
    fn v1_puts_each_controller_in_its_own_hierarchy() {
        let (_d, h) = fake(Layout::V1);
        assert_eq!(
            h.dir("pids", "/peapod/pod1"),
            h.root.join("pids/peapod/pod1")
        );
        h.create_pod("peapod/pod1", &PodLimits { pids: Some(64) })
            .unwrap();
        let max = std::fs::read_to_string(h.root.join("pids/peapod/pod1/pids.max")).unwrap();
        assert_eq!(max, "64");
    }

    #[test]
    fn unified_enables_the_controller_along_the_path() {
        let (_d, h) = fake(Layout::Unified);
        std::fs::write(h.root.join("cgroup.subtree_control"), "cpu memory").unwrap();
        std::fs::create_dir(h.root.join("peapod")).unwrap();
        std::fs::write(h.root.join("peapod/cgroup.subtree_control"), "pids").unwrap();
        h.create_pod("/peapod/pod1", &PodLimits { pids: Some(10) })
            .unwrap();
        // Written as "+pids" to the root, left alone where it was on.
        let root = std::fs::read_to_string(h.root.join("cgroup.subtree_control")).unwrap();
        assert_eq!(root, "+pids");
        let mid = std::fs::read_to_string(h.root.join("peapod/cgroup.subtree_control")).unwrap();
        assert_eq!(mid, "pids");
        let max = std::fs::read_to_string(h.root.join("peapod/pod1/pids.max")).unwrap();
        assert_eq!(max, "10");
    }

    #[test]
    fn no_limit_makes_nothing() {
        let (_d, h) = fake(Layout::Unified);
        h.create_pod("peapod/pod1", &PodLimits::default()).unwrap();
        assert!(!h.root.join("peapod").exists());
    }

    #[test]
    fn usage_and_oom_kills_are_read_from_either_layout() {
        let (_d, v1) = fake(Layout::V1);
        let cpuacct = v1.root.join("cpuacct/p/c");
        let memory = v1.root.join("memory/p/c");
        std::fs::create_dir_all(&cpuacct).unwrap();
        std::fs::create_dir_all(&memory).unwrap();
        std::fs::write(cpuacct.join("cpuacct.usage"), "5000\n").unwrap();
        std::fs::write(memory.join("memory.usage_in_bytes"), "300\n").unwrap();
        std::fs::write(
            memory.join("memory.stat"),
            "cache 1\ntotal_inactive_file 100\n",
        )
        .unwrap();
        std::fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(v1.usage("p/c"), Some((5000, 200)));
        assert!(v1.oom_killed("/p/c"));

        let (_d, v2) = fake(Layout::Unified);
        let dir = v2.root.join("p/c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 7\nuser_usec 5\n").unwrap();
        std::fs::write(dir.join("memory.current"), "50\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "inactive_file 20\n").unwrap();
        std::fs::write(dir.join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
        assert_eq!(v2.usage("p/c"), Some((7000, 30)));
        assert!(!v2.oom_killed("p/c"));
    }

    #[test]
    fn removal_takes_leftover_leaves_first() {
        let (_d, h) = fake(Layout::V1);
        for c in ["pids", "memory"] {
            std::fs::create_dir_all(h.root.join(c).join("peapod/pod1/leaf")).unwrap();
        }
        h.remove("peapod/pod1");
        assert!(!h.root.join("pids/peapod/pod1").exists());
        assert!(!h.root.join("memory/peapod/pod1").exists());
        assert!(h.root.join("memory/peapod").exists());
    }

    #[test]
    fn this_host_has_a_layout() {
        // Whichever it is, the pids controller is where the layout says.
        let h = Hierarchies::host();
        let dir = h.dir("pids", "");
        assert!(dir.join("cgroup.procs").exists(), "{}", dir.display());
    }
}
