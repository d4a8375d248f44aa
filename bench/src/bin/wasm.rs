//! Wasm containers, against peers measured in the same run:
//! - requests/s of the HTTP sample on its pod IP vs `wasmtime serve` of the
//!   same component (wrk, same parameters; the peer runs when a `wasmtime`
//!   48 binary is on the PATH or in `$WASMTIME`);
//! - Wasm pod create → Ready latency, p50 and p99 over 100 pods;
//! - memory per idle Wasm pod: the growth of the `peapod up` process with
//!   1,000 idle pods of the sample.
//!
//! Run: `cargo build --release -p peapod -p peapod-bench && ./target/release/wasm`
//! (as root; needs docker-registry, skopeo, umoci, wrk, and cargo with the
//! wasm32-wasip2 target for the samples).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use peapod_bench::{Registry, Server, hello_component, ms, summarize};
use serde_json::json;

const WRK: [&str; 3] = ["-t2", "-c32", "-d5s"];
const LATENCY_PODS: usize = 100;
const IDLE_PODS: usize = 1000;

fn wrk(url: &str) -> anyhow::Result<f64> {
    let out = Command::new("wrk").args(WRK).arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("wrk printed no rate: {text}"))
}

fn pod(name: &str, image: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "hello", "image": image, "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]},
    }))
    .expect("a valid pod")
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn create_until_ready(pods: &Api<Pod>, p: Pod) -> anyhow::Result<Duration> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let mut watch = Box::pin(
        pods.watch(
            &WatchParams::default().fields(&format!("metadata.name={name}")),
            "0",
        )
        .await?,
    );
    let started = Instant::now();
    pods.create(&PostParams::default(), &p).await?;
    while let Some(event) = watch.try_next().await? {
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
            && ready(&p)
        {
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("the watch on {name} ended")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `wasmtime serve` of the component on `port`, when a wasmtime is at hand.
fn wasmtime_serve(port: u16) -> Option<std::process::Child> {
    let bin = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".into());
    Command::new(bin)
        .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
        .arg(hello_component())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = Registry::start()?;
    registry.push_wasm_samples()?;
    let image = format!("{}/samples/hello-http:v1", registry.address);
    let run_dir = tempfile::tempdir()?;
    let name = format!("wb{:x}", std::process::id() & 0xffff);
    let server = Server::up(
        [
            "--network-name",
            &name,
            "--cluster-cidr",
            "10.197.0.0/16",
            "--node-cidr-mask-size",
            "21",
            "--max-pods",
            "1100",
            "--run-dir",
            &run_dir.path().display().to_string(),
            "--kubelet-port",
            "0",
            "--insecure-registry",
            &registry.address,
            "--ingress-port",
            "0",
            "--ingress-tls-port",
            "0",
        ]
        .map(String::from)
        .to_vec(),
    )?;
    let peapod_pid = server.pid();
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // The node comes up; the first pod pulls and compiles outside the timing.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match create_until_ready(&pods, pod("warmup", &image, json!({"bench": "warmup"}))).await {
            Ok(_) => break,
            Err(e) => {
                anyhow::ensure!(Instant::now() < deadline, "warm-up failed: {e}");
                let _ = pods
                    .delete("warmup", &DeleteParams::default().grace_period(0))
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let warm = pods.get("warmup").await?;
    let ip = warm.status.and_then(|s| s.pod_ip).unwrap_or_default();

    let peapod_rps = wrk(&format!("http://{ip}:8080/"))?;
    let peer_port = 22000 + (std::process::id() % 1000) as u16;
    let peer = match wasmtime_serve(peer_port) {
        Some(mut child) => {
            std::thread::sleep(Duration::from_secs(2));
            let rps = wrk(&format!("http://127.0.0.1:{peer_port}/")).ok();
            let _ = child.kill();
            let _ = child.wait();
            rps
        }
        None => None,
    };

    let mut samples = Vec::with_capacity(LATENCY_PODS);
    for i in 0..LATENCY_PODS {
        samples.push(
            create_until_ready(
                &pods,
                pod(&format!("lat-{i}"), &image, json!({"bench": "latency"})),
            )
            .await?,
        );
    }
    let latency = summarize(samples);
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("bench=latency"),
    )
    .await?;
    while !pods
        .list(&ListParams::default().labels("bench=latency"))
        .await?
        .items
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kib(peapod_pid);
    for i in 0..IDLE_PODS {
        pods.create(
            &PostParams::default(),
            &pod(&format!("idle-{i}"), &image, json!({"bench": "idle"})),
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let list = pods
            .list(&ListParams::default().labels("bench=idle"))
            .await?;
        if list.items.iter().filter(|p| ready(p)).count() == IDLE_PODS {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the idle pods did not all become ready"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(peapod_pid);

    println!(
        "Wasm HTTP function (the hello sample; wrk {}):",
        WRK.join(" ")
    );
    println!("  peapod, pod IP     {peapod_rps:>10.0} req/s");
    match peer {
        Some(rps) => println!(
            "  wasmtime serve     {rps:>10.0} req/s   ratio {:.2} (goal >= 1.5)",
            peapod_rps / rps
        ),
        None => println!(
            "  wasmtime serve     (not run: no wasmtime 48 binary on the PATH or in $WASMTIME)"
        ),
    }
    println!("Wasm pod create -> Ready, {LATENCY_PODS} pods one after another (image cached):");
    println!(
        "  p50 {}  p99 {}  max {}  (goal p99 <= 20 ms)",
        ms(latency.p50),
        ms(latency.p99),
        ms(latency.max)
    );
    println!(
        "Memory of `peapod up` (control plane and node in one process): {} MiB with 1 pod, {} MiB with {} more idle Wasm pods: {:.2} MiB per pod (goal <= 2 MiB)",
        before / 1024,
        after / 1024,
        IDLE_PODS,
        (after.saturating_sub(before)) as f64 / 1024.0 / IDLE_PODS as f64
    );
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    Ok(())
}
