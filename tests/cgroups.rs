//! Pods are confined by cgroups on whichever layout the host has (cgroup
//! v1, hybrid or v2 unified; needs root): a container's memory and CPU
//! limits are in its cgroup, the pod's cgroup caps its processes
//! (`--pod-max-pids`) so a fork bomb stops there, and a container that
//! makes a device node of a host block device cannot open it, unless it
//! is privileged.

mod support;

use std::time::Duration;

use peapod_runtimes::cgroups::{Hierarchies, Layout};
use support::registry::Registry;
use support::{Server, eventually, up_flags};

const WAIT: Duration = Duration::from_secs(60);
const PIDS: u64 = 40;

/// `major:minor` of a block device of the host's that this (root)
/// process can open: a disk, or where the machine forbids even root that
/// (some sandboxes do), a loop device. The container must not.
fn host_device() -> String {
    if std::fs::read_dir("/sys/block").map_or(0, |d| d.count()) == 0 {
        // A guest without disks (the cgroup v2 VM): loop devices, then.
        let _ = std::process::Command::new("modprobe").arg("loop").status();
    }
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    // Disks before loop devices.
    names.sort_by_key(|n| (n.starts_with("loop"), n.clone()));
    names
        .iter()
        .filter(|n| std::fs::File::open(format!("/dev/{n}")).is_ok())
        .find_map(|n| std::fs::read_to_string(format!("/sys/block/{n}/dev")).ok())
        .expect("a block device root can open")
        .trim()
        .to_string()
}

/// The container's cgroup path, as its own `/proc/self/cgroup` shows it
/// (the hierarchy of `controller`, or the unified one).
fn cgroup_of(s: &Server, pod: &str, controller: &str) -> String {
    let text = s.ok(&["exec", pod, "--", "cat", "/proc/self/cgroup"]);
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = match Hierarchies::host().layout {
                Layout::V1 => names.split(',').any(|n| n == controller),
                Layout::Unified => names.is_empty(),
            };
            wanted.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {text}"))
}

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn pods_are_confined_by_their_cgroups() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let run = tempfile::tempdir().unwrap();
    let mut flags = up_flags("cg", run.path());
    flags.extend(["--insecure-registry".to_string(), registry.address.clone()]);
    flags.extend(["--pod-max-pids".to_string(), PIDS.to_string()]);
    let s = Server::up(flags);
    assert!(
        eventually(WAIT, || s.ok(&["get", "nodes"]).contains(" Ready ")),
        "{}",
        s.log()
    );
    let disk = host_device();
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: limited}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
    resources:
      limits: {{memory: 64Mi, cpu: 250m}}
    securityContext:
      capabilities: {{add: [MKNOD]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: privileged}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3600"]
    securityContext: {{privileged: true}}
"#
    ));
    assert!(
        eventually(WAIT, || s.ok(&["get", "pods"]).matches("Running").count()
            == 2),
        "{}\n{}",
        s.ok(&["get", "pods", "-o", "wide"]),
        s.ok(&["get", "events"])
    );
    let h = Hierarchies::host();

    // The container's limits, in its cgroup.
    let memory = h.dir("memory", &cgroup_of(&s, "limited", "memory"));
    let cpu = h.dir("cpu", &cgroup_of(&s, "limited", "cpu"));
    match h.layout {
        Layout::V1 => {
            assert_eq!(read(memory.join("memory.limit_in_bytes")), "67108864");
            assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "25000");
        }
        Layout::Unified => {
            assert_eq!(read(memory.join("memory.max")), "67108864");
            assert_eq!(read(cpu.join("cpu.max")), "25000 100000");
        }
    }
    // The pod's cgroup (the container's parent) caps its processes.
    let pids = h.dir("pids", &cgroup_of(&s, "limited", "pids"));
    assert_eq!(
        read(pids.parent().unwrap().join("pids.max")),
        PIDS.to_string()
    );
    // A device node of the host's block device can be made but not opened.
    let (major, minor) = disk.split_once(':').unwrap();
    let try_disk = |pod: &str| {
        let script = format!(
            "mknod /dev/host b {major} {minor} && head -c 1 /dev/host >/dev/null && echo opened"
        );
        s.kubectl(&["exec", pod, "--", "sh", "-c", &script])
    };
    let out = try_disk("limited");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not permitted"),
        "the host's device {disk} was opened: {}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Only a privileged container may use it.
    let out = try_disk("privileged");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "opened",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Standard devices still work.
    assert_eq!(
        s.ok(&[
            "exec",
            "limited",
            "--",
            "sh",
            "-c",
            "head -c 3 /dev/zero | wc -c"
        ])
        .trim(),
        "3"
    );

    // Last, as its processes hold the pod's pids until they end.
    let bomb = s.kubectl(&[
        "exec",
        "limited",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo started $i",
    ]);
    let said =
        String::from_utf8_lossy(&bomb.stderr).to_string() + &String::from_utf8_lossy(&bomb.stdout);
    assert!(said.contains("can't fork"), "{said}");
    // The node is unharmed: another exec still runs.
    assert!(
        eventually(WAIT, || s
            .kubectl(&["exec", "privileged", "--", "true"])
            .status
            .success()),
        "exec after the fork bomb"
    );
}
