//! What end-to-end tests share: a real `peapod server` in a temporary data
//! directory on a free port, and the real `kubectl` pointed at it.

#![allow(dead_code)]

pub mod docker;
pub mod hosts;
pub mod registry;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The kubectl under test: `$KUBECTL`, else the one on the PATH.
pub fn kubectl_binary() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// A `peapod server` (or `peapod up`) process, killed (and its data
/// removed) on drop; after `up`, everything it made on the host is torn
/// down with `peapod up --cleanup`.
pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    cache: tempfile::TempDir,
    subcommand: &'static str,
    flags: Vec<String>,
}

/// Host-wide names for one `peapod up` of a test: its own bridge and
/// iptables chains, pod network and runtime directory, so that tests run
/// side by side and never meet what a user's Peapod made.
pub fn up_flags(tag: &str, run_dir: &Path) -> Vec<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = (std::process::id() * 8 + n) & 0xffff;
    let second = 100 + (id % 100);
    [
        "--network-name".to_string(),
        format!("pt{id:x}"),
        "--cluster-cidr".into(),
        format!("10.{second}.0.0/16"),
        "--run-dir".into(),
        run_dir.join(tag).display().to_string(),
        "--kubelet-port".into(),
        "0".into(),
        "--name".into(),
        format!("{tag}-node"),
        "--ingress-port".into(),
        (20000 + (id % 4000) * 2).to_string(),
        "--ingress-tls-port".into(),
        (20001 + (id % 4000) * 2).to_string(),
    ]
    .to_vec()
}

/// The value of `--flag` among `flags`.
pub fn flag_value(flags: &[String], flag: &str) -> String {
    flags
        .iter()
        .skip_while(|f| *f != flag)
        .nth(1)
        .cloned()
        .unwrap_or_default()
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_in_with(dir, flags)
    }

    /// Starts a server on an existing data directory (for restarts).
    pub fn start_in(dir: tempfile::TempDir) -> Server {
        Server::start_in_with(dir, &[])
    }

    fn start_in_with(dir: tempfile::TempDir, flags: &[&str]) -> Server {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Server::launch("server", dir, flags)
    }

    /// Starts a server listening on `listen` (an address test hosts reach).
    pub fn start_on(listen: &str) -> Server {
        let flags = vec!["--listen".to_string(), listen.to_string()];
        Server::launch("server", tempfile::tempdir().expect("temp dir"), flags)
    }

    /// Starts a server again on the data directory of one that was
    /// killed, listening on `listen` (its address and port, for clients
    /// that kept them).
    pub fn restart_on(dir: tempfile::TempDir, listen: &str) -> Server {
        let flags = vec!["--listen".to_string(), listen.to_string()];
        Server::launch("server", dir, flags)
    }

    /// Starts `peapod up` (control plane and a node) with `flags`.
    pub fn up(flags: Vec<String>) -> Server {
        Server::launch("up", tempfile::tempdir().expect("temp dir"), flags)
    }

    /// Starts `peapod up` again on the data directory of one that was killed.
    pub fn up_in(dir: tempfile::TempDir, flags: Vec<String>) -> Server {
        Server::launch("up", dir, flags)
    }

    /// Starts a server that may hold at most `files` open file descriptors
    /// (its hard limit, through util-linux `prlimit`).
    pub fn start_with_fd_limit(files: u64) -> Server {
        let limit = format!("--nofile={files}:{files}");
        let dir = tempfile::tempdir().expect("temp dir");
        Server::launch_under(&["prlimit", &limit, "--"], "server", dir, Vec::new())
    }

    fn launch(subcommand: &'static str, dir: tempfile::TempDir, flags: Vec<String>) -> Server {
        Server::launch_under(&[], subcommand, dir, flags)
    }

    /// `launch`, the binary run by the `wrapper` command line, if any.
    fn launch_under(
        wrapper: &[&str],
        subcommand: &'static str,
        dir: tempfile::TempDir,
        flags: Vec<String>,
    ) -> Server {
        let kubeconfig = dir.path().join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .expect("log file");
        let listen = if flags.iter().any(|f| f == "--listen") {
            Vec::new()
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        let peapod = env!("CARGO_BIN_EXE_peapod");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(peapod);
                c
            }
            None => Command::new(peapod),
        };
        let child = command
            .arg(subcommand)
            .args(listen)
            .arg("--data-dir")
            .arg(dir.path())
            .args(&flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start peapod");
        let mut server = Server {
            child: Some(child),
            dir,
            kubeconfig,
            url: String::new(),
            cache: tempfile::tempdir().expect("cache dir"),
            subcommand,
            flags,
        };
        server.url = server.wait_ready();
        server
    }

    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("peapod server exited with {status}: {}", self.log());
            }
            if let Ok(config) = std::fs::read_to_string(&self.kubeconfig)
                && let Some(url) = config
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("server: "))
            {
                let url = url.to_string();
                if self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                    return url;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("peapod server did not become ready: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server without warning (SIGKILL) and returns its data
    /// directory (what an `up` made on the host stays, for a restart).
    pub fn kill(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.subcommand = "server";
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_binary());
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.cache.path())
            .env("HOME", self.cache.path());
        cmd
    }

    /// A kubeconfig with the admin's cluster and CA but no credential
    /// (for requests that bring their own, or none), written once.
    pub fn kubeconfig_without_credentials(&self) -> PathBuf {
        let path = self.dir.path().join("no-credentials.kubeconfig");
        if !path.exists() {
            let config: String = std::fs::read_to_string(&self.kubeconfig)
                .expect("the kubeconfig")
                .lines()
                .filter(|l| {
                    !l.contains("client-certificate-data") && !l.contains("client-key-data")
                })
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&path, config).expect("write a kubeconfig");
        }
        path
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl on a terminal (util-linux `script` gives it a pty),
    /// `typed` as its input, which stays open afterwards as an interactive
    /// user's would.
    pub fn kubectl_tty(&self, args: &[&str], typed: &str) -> Output {
        let line = std::iter::once(kubectl_binary())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = Command::new("script");
        script
            .args(["-qefc", &line, "/dev/null"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.cache.path())
            .env("HOME", self.cache.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = script.spawn().expect("run script");
        // Held until kubectl is done: the end of input would end the session.
        let mut input = child.stdin.take();
        if let Some(i) = input.as_mut() {
            i.write_all(typed.as_bytes()).expect("type");
        }
        let out = child.wait_with_output().expect("kubectl output");
        drop(input);
        out
    }

    /// Runs kubectl and returns its stdout, panicking with its stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The messages of the events about the object `name`.
    pub fn events_of(&self, name: &str) -> String {
        self.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={.items[*].message}",
        ])
    }

    /// Waits up to `timeout` for `kubectl get pod <name>` to show `text`;
    /// fails with the pod's description if it does not.
    pub fn wait_pod_shows(&self, name: &str, text: &str, timeout: Duration) {
        assert!(
            eventually(timeout, || self.ok(&["get", "pod", name]).contains(text)),
            "{name} never showed {text}: {}",
            self.ok(&["describe", "pod", name])
        );
    }

    /// Applies a manifest given inline.
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A `peapod node --hollow` process, killed on drop.
pub struct Hollow {
    child: Option<Child>,
}

impl Hollow {
    /// Starts `count` hollow nodes named `<prefix>-<i>` against `server`.
    pub fn start(server: &Server, prefix: &str, count: usize) -> Hollow {
        let child = Command::new(env!("CARGO_BIN_EXE_peapod"))
            .args([
                "node",
                "--hollow",
                "--server",
                &server.url,
                "--name",
                prefix,
            ])
            .args(["--count", &count.to_string(), "--token-file"])
            .arg(server.dir.path().join("node-token"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hollow nodes");
        let hollow = Hollow { child: Some(child) };
        let ready = eventually(Duration::from_secs(30), || {
            let out = server.ok(&["get", "nodes", "-o", "name"]);
            (0..count).all(|i| out.contains(&format!("node/{prefix}-{i}\n")))
        });
        assert!(ready, "hollow nodes {prefix} did not register");
        hollow
    }

    /// Kills the process: its nodes stop renewing their leases.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.subcommand == "up" {
            let status = Command::new(env!("CARGO_BIN_EXE_peapod"))
                .args(["up", "--cleanup", "--data-dir"])
                .arg(self.dir.path())
                .args(&self.flags)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("peapod up --cleanup failed: the host may keep leftovers");
            }
        }
    }
}

/// A manifest from `tests/manifests`.
pub fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(name)
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
