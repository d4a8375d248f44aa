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

/// A `peapod server` process on a fresh data directory, killed on drop.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> anyhow::Result<Server> {
        Server::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(flags: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let child = Command::new(peapod_binary())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.dir.path().join("kubeconfig").exists() {
            anyhow::ensure!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = kube::config::Kubeconfig::read_from(self.dir.path().join("kubeconfig"))?;
        let config = kube::Config::from_custom_kubeconfig(
            config,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for Server {
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
