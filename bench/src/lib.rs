//! Shared pieces of the benchmark programs: starting a `peapod server`
//! process, connecting a client, and summarising latencies.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `peapod` binary next to this benchmark (same target directory),
/// or `$PEAPOD_BIN`.
pub fn peapod_binary() -> PathBuf {
    if let Ok(p) = std::env::var("PEAPOD_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("exe dir").join("peapod")
}

/// A `peapod server` (or `peapod up`) process on a fresh data directory,
/// killed on drop; what an `up` made on the host is removed with
/// `peapod up --cleanup`.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The flags of an `up`, for its cleanup.
    up_flags: Option<Vec<String>>,
}

impl Server {
    pub fn start() -> anyhow::Result<Server> {
        Server::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(flags: &[&str]) -> anyhow::Result<Server> {
        Server::launch("server", flags.iter().map(|s| s.to_string()).collect())
    }

    /// Starts `peapod up` (control plane and a node) with `flags`.
    pub fn up(flags: Vec<String>) -> anyhow::Result<Server> {
        Server::launch("up", flags)
    }

    fn launch(subcommand: &str, flags: Vec<String>) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("peapod.log"))?;
        let child = Command::new(peapod_binary())
            .args([subcommand, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let server = Server {
            child,
            dir,
            up_flags: (subcommand == "up").then_some(flags),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.dir.path().join("kubeconfig").exists() {
            anyhow::ensure!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The server process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from(&self.dir.path().join("kubeconfig")).await
    }

    /// A client for `user` in `groups`, with a certificate from
    /// `peapod kubeconfig` (RBAC decides what it may do).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
        let mut cmd = Command::new(peapod_binary());
        cmd.args(["kubeconfig", "--user", user, "--data-dir"])
            .arg(self.dir.path());
        for g in groups {
            cmd.args(["--group", g]);
        }
        let out = cmd.output()?;
        anyhow::ensure!(
            out.status.success(),
            "peapod kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, out.stdout)?;
        client_from(&path).await
    }
}

async fn client_from(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(flags) = &self.up_flags {
            let _ = Command::new(peapod_binary())
                .args(["up", "--cleanup", "--data-dir"])
                .arg(self.dir.path())
                .args(flags)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// A local registry (Debian's `docker-registry`) with the busybox test
/// image pushed to it, stopped on drop.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    pub address: String,
}

impl Registry {
    pub fn start() -> anyhow::Result<Registry> {
        let dir = tempfile::tempdir()?;
        let address = format!(
            "127.0.0.1:{}",
            free_port().ok_or_else(|| anyhow::anyhow!("no free port"))?
        );
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Registry {
            child,
            _dir: dir,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    /// Builds and pushes the busybox test image; returns its reference.
    pub fn push_busybox(&self) -> anyhow::Result<String> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/busybox.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(&self.address)
            .status()?;
        anyhow::ensure!(status.success(), "pushing busybox failed");
        Ok(format!("{}/busybox:1.36", self.address))
    }

    /// Builds the Wasm samples and pushes them (`samples/wasm/push.sh`).
    pub fn push_wasm_samples(&self) -> anyhow::Result<()> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/push.sh");
        let ok = Command::new("bash")
            .arg(script)
            .arg(&self.address)
            .env("PEAPOD", peapod_binary())
            .stdout(Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "pushing the Wasm samples failed");
        Ok(())
    }
}

/// The Wasm hello component as `samples/wasm/push.sh` built it.
pub fn hello_component() -> PathBuf {
    let target = std::env::var("SAMPLES_TARGET_DIR").unwrap_or_else(|_| {
        let base = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/cache/peapod".into());
        format!("{base}/samples-target")
    });
    PathBuf::from(target).join("wasm32-wasip2/release/hello_http.wasm")
}

/// `peapod up` flags for a benchmark's node: its own bridge name, cluster
/// CIDR and run directory, the local registry over plain HTTP, and the
/// Ingress on `ingress_port` (HTTPS on the next port).
pub fn node_flags(
    name: &str,
    cluster_cidr: &str,
    run_dir: &std::path::Path,
    registry: &str,
    ingress_port: u16,
) -> Vec<String> {
    [
        "--network-name",
        name,
        "--cluster-cidr",
        cluster_cidr,
        "--run-dir",
        &run_dir.display().to_string(),
        "--kubelet-port",
        "0",
        "--insecure-registry",
        registry,
        "--ingress-port",
        &ingress_port.to_string(),
        "--ingress-tls-port",
        &(ingress_port + 1).to_string(),
    ]
    .map(String::from)
    .to_vec()
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Latency percentiles of a sample.
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().expect("samples"),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A throwaway etcd (Kubernetes' own store) on loopback, the peer for the
/// API server's write path. `None` when etcd is not installed.
pub struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Etcd {
    pub fn start() -> Option<Etcd> {
        let dir = tempfile::tempdir().ok()?;
        let port = free_port()?;
        let peer = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let etcd = Etcd {
            child,
            _dir: dir,
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(etcd.url.trim_start_matches("http://")).is_ok() {
                std::thread::sleep(Duration::from_millis(500));
                return Some(etcd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Option<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(l.local_addr().ok()?.port())
}
