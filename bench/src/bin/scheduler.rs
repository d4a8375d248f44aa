//! Scheduler benchmark: 30,000 pending pods and 1,000 hollow nodes. The
//! server runs without its scheduler; once every pod exists, this program
//! runs Peapod's scheduler itself, as a client of the API over HTTPS, and
//! measures how fast every pod gets bound.
//! Run with `cargo run --release -p peapod-bench --bin scheduler`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use peapod_bench::{Server, peapod_binary};
use serde_json::json;

const NODES: usize = 1_000;
const PODS: usize = 30_000;
const CLIENTS: usize = 16;
/// kube-scheduler's published throughput at 5,000 nodes.
const KUBE_SCHEDULER_PODS_PER_SECOND: f64 = 100.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start_with(&["--disable-controller", "scheduler"])?;
    let client = server.client().await?;
    let url = std::fs::read_to_string(server.dir.path().join("kubeconfig"))?
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(String::from))
        .expect("server URL in kubeconfig");
    let mut hollow = Command::new(peapod_binary())
        .args([
            "node",
            "--hollow",
            "--name",
            "hollow",
            "--count",
            &NODES.to_string(),
        ])
        .args(["--server", &url, "--token-file"])
        .arg(server.dir.path().join("node-token"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    while nodes
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .remaining_item_count
        .unwrap_or(0)
        + 1
        < NODES as i64
    {
        anyhow::ensure!(Instant::now() < deadline, "hollow nodes did not register");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{NODES} hollow nodes registered");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (pods, next) = (pods.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= PODS {
                        return;
                    }
                    let pod: Pod = serde_json::from_value(json!({
                        "metadata": {"name": format!("p-{i}"), "labels": {"app": format!("a{}", i % 100)}},
                        "spec": {"containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}
                    }))
                    .expect("pod");
                    pods.create(&PostParams::default(), &pod).await.expect("create pod");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    println!(
        "{PODS} pending pods created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Count bindings as the watch reports them.
    let bound = Arc::new(AtomicUsize::new(0));
    let counter = bound.clone();
    let mut events =
        watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut done_tx = Some(done_tx);
        while let Some(Ok(e)) = events.next().await {
            if let Event::Apply(p) | Event::InitApply(p) = e
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && seen.insert(p.metadata.name.clone().unwrap_or_default())
            {
                counter.store(seen.len(), Ordering::Relaxed);
                if seen.len() == PODS
                    && let Some(tx) = done_tx.take()
                {
                    let _ = tx.send(Instant::now());
                }
            }
        }
    });
    let scheduler_client = server.client().await?;
    let start = Instant::now();
    tokio::spawn(peapod_control::scheduler::run(
        scheduler_client.clone(),
        peapod_common::events::Recorder::new(scheduler_client, "bench-scheduler"),
    ));
    let progress = tokio::spawn({
        let bound = bound.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                println!(
                    "  {} pods bound after {:.0} s",
                    bound.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64()
                );
            }
        }
    });
    let finished = match tokio::time::timeout(Duration::from_secs(300), done_rx).await {
        Ok(t) => t?,
        Err(_) => {
            let all = Api::<Pod>::namespaced(client.clone(), "default")
                .list(&ListParams::default())
                .await?;
            let unbound: Vec<_> = all
                .items
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
                .collect();
            println!(
                "timed out: {} of {} pods unbound",
                unbound.len(),
                all.items.len()
            );
            if let Some(p) = unbound.first() {
                println!(
                    "e.g. {}: {:?}",
                    p.metadata.name.clone().unwrap_or_default(),
                    p.status
                );
            }
            anyhow::bail!("not every pod was bound");
        }
    };
    progress.abort();
    let elapsed = finished.duration_since(start).as_secs_f64();
    let rate = PODS as f64 / elapsed;
    println!(
        "scheduled {PODS} pods on {NODES} nodes in {elapsed:.2} s = {rate:.0} pods/s (goal >= 2000); \
         {:.1}x kube-scheduler's published {KUBE_SCHEDULER_PODS_PER_SECOND} pods/s",
        rate / KUBE_SCHEDULER_PODS_PER_SECOND
    );
    let _ = hollow.kill();
    let _ = hollow.wait();
    Ok(())
}
