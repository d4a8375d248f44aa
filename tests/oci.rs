//! OCI containers against the real kernel and a real registry (needs root):
//! an image pulled from a local registry runs through a shim, its output
//! lands in the log, its exit code and OOM kills are reported, exec works,
//! and nothing is left behind.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use peapod_node::network::netns;
use peapod_runtimes::image::{self, ImageStore, PullPolicy};
use peapod_runtimes::oci::{
    BindMount, ContainerConfig, Oci, PodNamespaces, Resources, Seccomp, Security,
};
use support::registry::Registry;

/// Everything one test makes on the machine, removed on drop.
struct Fixture {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    mounts: Vec<PathBuf>,
    namespaces: PodNamespaces,
    oci: Oci,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let ns_dir = dir.path().join("ns");
        let namespaces = PodNamespaces {
            net: ns_dir.join("net"),
            ipc: ns_dir.join("ipc"),
            uts: ns_dir.join("uts"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            netns::create(netns::Kind::Net, &namespaces.net, None)
                .await
                .unwrap();
            netns::create(netns::Kind::Ipc, &namespaces.ipc, None)
                .await
                .unwrap();
            netns::create(netns::Kind::Uts, &namespaces.uts, Some("test-pod"))
                .await
                .unwrap();
        });
        let lo = std::process::Command::new("nsenter")
            .arg(format!("--net={}", namespaces.net.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(lo.success());
        let oci = Oci::new(
            &dir.path().join("oci"),
            Path::new(env!("CARGO_BIN_EXE_peapod")),
        );
        Fixture {
            cgroup_parent: format!("peapod-test-{tag}-{}/pod", std::process::id()),
            mounts: Vec::new(),
            namespaces,
            oci,
            dir,
        }
    }

    /// A container config for `image` running `args`, with its own rootfs.
    fn container(&mut self, image: &image::Image, id: &str, args: &[&str]) -> ContainerConfig {
        let base = self.dir.path().join("containers").join(id);
        let rootfs = base.join("rootfs");
        image::mount_rootfs(
            &image.layers,
            &base.join("upper"),
            &base.join("work"),
            &rootfs,
        )
        .expect("mount rootfs");
        self.mounts.push(rootfs.clone());
        ContainerConfig {
            id: id.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin:/usr/bin:/sbin:/usr/sbin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            rootfs,
            mounts: vec![],
            namespaces: self.namespaces.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            resources: Resources::default(),
            security: Security::default(),
            log: base.join("log"),
            log_rotation: Default::default(),
            streams: Default::default(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.oci.ids() {
            if let Some(r) = self.oci.running(&id) {
                self.oci.signal(&r, nix::sys::signal::Signal::SIGKILL);
                std::thread::sleep(Duration::from_millis(200));
            }
            self.oci.remove(&id);
        }
        for m in &self.mounts {
            let _ = image::unmount(m);
        }
        for p in [
            &self.namespaces.net,
            &self.namespaces.ipc,
            &self.namespaces.uts,
        ] {
            let _ = netns::remove(p);
        }
        // Container cgroups are removed by their shims; the parents here.
        let top = self.cgroup_parent.split('/').next().unwrap_or_default();
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.cgroup_parent));
            let _ = std::fs::remove_dir(hierarchy.path().join(top));
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pull(registry: &Registry, dir: &Path) -> image::Image {
    pull_image(registry, dir, &registry.push_busybox())
}

fn pull_image(registry: &Registry, dir: &Path, reference: &str) -> image::Image {
    let store = ImageStore::new(dir, vec![registry.address.clone()]);
    runtime()
        .block_on(store.pull(reference, PullPolicy::IfNotPresent, &[]))
        .expect("pull the test image")
}

#[test]
fn containers_run_log_exit_exec_and_are_oom_killed() {
    let registry = Registry::start();
    let mut fx = Fixture::new("run");
    let image = pull(&registry, &fx.dir.path().join("images"));
    assert!(image.digest.starts_with("sha256:"));
    assert_eq!(image.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
    let rt = runtime();

    // Output goes to the log in CRI format; the exit code is kept.
    let config = fx.container(
        &image,
        "t-echo-0",
        &["sh", "-c", "echo hello; echo oops >&2; hostname; exit 3"],
    );
    let running = rt.block_on(fx.oci.start(&config)).expect("start");
    assert!(running.pid > 0);
    let exit = rt.block_on(fx.oci.wait(&running));
    assert_eq!(exit.code, 3, "{exit:?}");
    assert!(!exit.oom_killed);
    let log = std::fs::read_to_string(&config.log).unwrap();
    assert!(log.contains(" stdout F hello\n"), "{log}");
    assert!(log.contains(" stderr F oops\n"), "{log}");
    assert!(
        log.contains(" stdout F test-pod\n"),
        "hostname is the pod's: {log}"
    );

    // A bind mount and a second container sharing the pod's network:
    // one serves on localhost, exec in the other reaches it.
    let shared = fx.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("index.html"), "from the volume\n").unwrap();
    let mut server = fx.container(
        &image,
        "t-httpd-0",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    );
    server.mounts.push(BindMount {
        source: shared.clone(),
        destination: "/www".into(),
        readonly: true,
    });
    let server_running = rt.block_on(fx.oci.start(&server)).expect("start httpd");
    let client = fx.container(&image, "t-client-0", &["sleep", "1000"]);
    let client_running = rt.block_on(fx.oci.start(&client)).expect("start sleeper");
    let mut got = String::new();
    for _ in 0..50 {
        let wget = ["wget", "-q", "-O-", "http://127.0.0.1:8080/"].map(String::from);
        let out = rt
            .block_on(async {
                fx.oci
                    .exec_command(&client_running.id, &wget)
                    .output()
                    .await
            })
            .unwrap();
        got = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("wget: {}", String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(got, "from the volume\n");
    let exit5 = ["sh", "-c", "exit 5"].map(String::from);
    let status = rt
        .block_on(async {
            fx.oci
                .exec_command(&client_running.id, &exit5)
                .status()
                .await
        })
        .unwrap();
    assert_eq!(status.code(), Some(5));

    // SIGTERM ends the container; the exit records the signal.
    fx.oci
        .signal(&server_running, nix::sys::signal::Signal::SIGKILL);
    let exit = rt.block_on(fx.oci.wait(&server_running));
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    fx.oci
        .signal(&client_running, nix::sys::signal::Signal::SIGKILL);
    rt.block_on(fx.oci.wait(&client_running));

    // Over its memory limit, a container is OOM killed.
    let mut hog = fx.container(
        &image,
        "t-hog-0",
        &[
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ],
    );
    hog.resources.memory_limit_bytes = Some(32 << 20);
    let running = rt.block_on(fx.oci.start(&hog)).expect("start hog");
    let exit = rt.block_on(fx.oci.wait(&running));
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);

    // A missing binary is a start error, not a hang.
    let bad = fx.container(&image, "t-bad-0", &["/no/such/binary"]);
    let err = rt.block_on(fx.oci.start(&bad)).err();
    let exit = err.map(|e| e.to_string()).unwrap_or_else(|| {
        let r = fx.oci.running("t-bad-0");
        format!("{r:?} {:?}", fx.oci.exit("t-bad-0"))
    });
    assert!(
        exit.contains("no/such/binary") || exit.contains("No such file"),
        "{exit}"
    );

    // Containers' cgroups are gone once they ended.
    for id in ["t-echo-0", "t-httpd-0", "t-hog-0"] {
        let cg = Path::new("/sys/fs/cgroup/memory")
            .join(&fx.cgroup_parent)
            .join(id);
        assert!(!cg.exists(), "{} left behind", cg.display());
    }
}

/// What the prober (tests/images/probe.c) reported, call by call, running
/// under `security`.
fn probe(fx: &mut Fixture, image: &image::Image, id: &str, security: Security) -> String {
    let rt = runtime();
    let mut config = fx.container(image, id, &["/probe"]);
    config.security = security;
    let running = rt
        .block_on(fx.oci.start(&config))
        .expect("start the prober");
    let exit = rt.block_on(fx.oci.wait(&running));
    let log = std::fs::read_to_string(&config.log).unwrap_or_default();
    assert_eq!(exit.code, 0, "{exit:?} {log}");
    let calls: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split(" stdout F ").nth(1))
        .collect();
    calls.join(" ")
}

#[test]
fn runtime_default_seccomp_is_an_allow_list_and_unconfined_only_when_asked() {
    let registry = Registry::start();
    let mut fx = Fixture::new("seccomp");
    let image = pull_image(
        &registry,
        &fx.dir.path().join("images"),
        &registry.push_probe(),
    );
    let confined = Security {
        seccomp: Seccomp::RuntimeDefault,
        ..Security::default()
    };

    // Calls a deny-list let through (io_uring, clone3 with namespace
    // flags) are refused; clone3 says ENOSYS so that threads fall back to
    // clone, which forks but makes no namespaces.
    let got = probe(&mut fx, &image, "t-seccomp-default-0", confined.clone());
    for expected in [
        "io_uring_setup=EPERM",
        "clone3_newuser=ENOSYS",
        "clone_fork=OK",
        "clone_newuser=EPERM",
        "unshare_newns=EPERM",
        "keyctl=EPERM",
        "personality_no_randomize=EPERM",
        "thread=OK",
    ] {
        assert!(
            got.contains(expected),
            "{expected} under RuntimeDefault: {got}"
        );
    }

    // CAP_SYS_ADMIN brings the calls it governs, and only those.
    let admin = Security {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..confined
    };
    let got = probe(&mut fx, &image, "t-seccomp-admin-0", admin);
    for expected in ["unshare_newns=OK", "io_uring_setup=EPERM", "keyctl=EPERM"] {
        assert!(
            got.contains(expected),
            "{expected} with CAP_SYS_ADMIN: {got}"
        );
    }

    // Unconfined: the same calls reach the kernel.
    let got = probe(
        &mut fx,
        &image,
        "t-seccomp-unconfined-0",
        Security::default(),
    );
    for expected in [
        "io_uring_setup=OK",
        "personality_no_randomize=OK",
        "thread=OK",
    ] {
        assert!(got.contains(expected), "{expected} when Unconfined: {got}");
    }
    assert!(!got.contains("clone3_newuser=ENOSYS"), "{got}");
}
