//! The Service data path, against peers measured in the same run:
//! - wrk through a Service's cluster IP vs the same pod by its pod IP;
//! - wrk through Peapod's Ingress vs Debian's nginx as a reverse proxy to
//!   the same pod;
//! - the time to program 1,000 Services (created through the API, until
//!   their rules are in iptables), and one sync of their rules on its own.
//!
//! Run: `cargo build --release -p peapod -p peapod-bench && ./target/release/services`
//! (as root; needs docker-registry, skopeo, umoci, wrk, nginx, cargo with
//! the wasm32-wasip2 target for the sample function).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use peapod_bench::{Registry, Server, node_flags};
use serde_json::json;

const WRK: [&str; 4] = ["-t2", "-c32", "-d5s", "--latency"];

/// Rounds of the Ingress and nginx measurements.
const ROUNDS: usize = 3;

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Requests per second wrk reports for `url` (with extra header args).
fn wrk(url: &str, extra: &[&str]) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(WRK)
        .args(extra)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("wrk printed no rate: {text}"))?;
    Ok(rps)
}

/// nginx as a reverse proxy to `backend` on `port`, with keep-alive to it.
struct Nginx {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(port: u16, backend: &str, workers: usize) -> anyhow::Result<Nginx> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes {workers};\npid {pid};\nerror_log {log} error;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  upstream pod {{ server {backend}; keepalive 64; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://pod; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; }}\n  }}\n}}\n",
                pid = dir.path().join("nginx.pid").display(),
                log = dir.path().join("error.log").display(),
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Nginx { child, _dir: dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn iptables_services(prefix: &str) -> usize {
    let out = Command::new("iptables-save").args(["-t", "nat"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(&format!("-A {prefix}-SERVICES")) && l.contains("bench-"))
        .count()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = Registry::start()?;
    registry.push_wasm_samples()?;
    let run_dir = tempfile::tempdir()?;
    let name = format!("sb{:x}", std::process::id() & 0xffff);
    let prefix = name.to_ascii_uppercase();
    let ingress_port = 21000 + (std::process::id() % 1000) as u16 * 2;
    let server = Server::up(node_flags(
        &name,
        "10.198.0.0/16",
        run_dir.path(),
        &registry.address,
        ingress_port,
    ))?;
    let client = server.client().await?;
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/hello-http.yaml"),
    )?
    .replace("REGISTRY", &registry.address);
    apply(&server, &manifest)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(120);
    let pod_ip = loop {
        let list = pods.list(&Default::default()).await?;
        let ready = list.items.iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if let Some(ip) = ready.and_then(|p| p.status.as_ref()?.pod_ip.clone()) {
            break ip;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the function did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let cluster_ip = services
        .get("hello-wasm")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let direct = wrk(&format!("http://{pod_ip}:8080/"), &[])?;
    let via_service = wrk(&format!("http://{cluster_ip}/"), &[])?;
    // Peers: nginx with a worker per core (`worker_processes auto`), and
    // with as many workers as the Ingress has threads (by default half
    // the cores). Rounds alternate so that drift in the machine's speed
    // hits all three alike; each figure is the median of its rounds.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ingress_threads = (cores / 2).max(1);
    let nginx_port = ingress_port + 500;
    let backend = format!("{pod_ip}:8080");
    let nginx_auto = Nginx::start(nginx_port, &backend, cores)?;
    let nginx_same = Nginx::start(nginx_port + 1, &backend, ingress_threads)?;
    let host = ["-H", "Host: hello.example.com"];
    let (mut ingress, mut auto, mut same) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ingress.push(wrk(&format!("http://127.0.0.1:{ingress_port}/"), &host)?);
        auto.push(wrk(&format!("http://127.0.0.1:{nginx_port}/"), &host)?);
        same.push(wrk(
            &format!("http://127.0.0.1:{}/", nginx_port + 1),
            &host,
        )?);
    }
    drop((nginx_auto, nginx_same));
    let (via_ingress, via_nginx, via_nginx_same) = (median(ingress), median(auto), median(same));

    // 1,000 Services through the API, until the proxy has programmed them.
    let started = Instant::now();
    for i in 0..1000 {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{i}")},
            "spec": {"selector": {"app": "hello-wasm"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }))?;
        services.create(&PostParams::default(), &svc).await?;
    }
    let created = started.elapsed();
    while iptables_services(&prefix) < 1000 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the rules did not appear"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let programmed = started.elapsed();
    let one_sync = time_one_sync(&prefix)?;

    println!(
        "Service data path (wrk {}, the Wasm hello function as backend):",
        WRK.join(" ")
    );
    println!("  pod IP directly     {direct:>10.0} req/s");
    println!(
        "  through cluster IP  {via_service:>10.0} req/s   ratio {:.2} (goal >= 0.95)",
        via_service / direct
    );
    println!(
        "  nginx reverse proxy, {cores} worker(s)               {via_nginx:>10.0} req/s   (median of {ROUNDS})"
    );
    println!(
        "  nginx reverse proxy, {ingress_threads} worker(s)               {via_nginx_same:>10.0} req/s"
    );
    println!(
        "  through Ingress, {ingress_threads} thread(s) (default)       {via_ingress:>10.0} req/s   ratio {:.2} to nginx with {cores}, {:.2} to nginx with {ingress_threads} (goal >= 1.0)",
        via_ingress / via_nginx,
        via_ingress / via_nginx_same
    );
    println!(
        "1,000 Services: created through the API in {:.2} s, all programmed {:.2} s after the first create",
        created.as_secs_f64(),
        programmed.as_secs_f64()
    );
    println!(
        "  one sync of all their rules (iptables-save + one iptables-restore): {:.0} ms",
        one_sync.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Times one full resync of the node's rules, as the proxy does it: read
/// the chains present, then one restore of both tables (here: the same
/// text read back, which iptables must apply again in full).
fn time_one_sync(prefix: &str) -> anyhow::Result<Duration> {
    let save = Command::new("iptables-save").output()?;
    let text = String::from_utf8_lossy(&save.stdout).into_owned();
    // Only our chains, re-declared (flushed) and refilled, like a sync.
    let mut rules = String::new();
    for table in ["nat", "filter"] {
        let section: String = text
            .split(&format!("*{table}\n"))
            .nth(1)
            .and_then(|s| s.split("COMMIT").next())
            .unwrap_or_default()
            .to_string();
        rules.push_str(&format!("*{table}\n"));
        for l in section.lines() {
            let ours =
                l.starts_with(&format!(":{prefix}-")) || l.starts_with(&format!("-A {prefix}-"));
            if ours {
                rules.push_str(&l.replace(" ACCEPT [", " - [").replace(" DROP [", " - ["));
                rules.push('\n');
            }
        }
        rules.push_str("COMMIT\n");
    }
    let started = Instant::now();
    let _ = Command::new("iptables-save").args(["-t", "nat"]).output()?;
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "iptables-restore failed");
    Ok(started.elapsed())
}

fn apply(server: &Server, manifest: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", server.dir.path().join("kubeconfig"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "kubectl apply failed");
    Ok(())
}
