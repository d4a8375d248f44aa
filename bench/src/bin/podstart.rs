//! Pod start latency: the time from a pod's create request to the node
//! reporting it Running (image already on the node), over 100 pods created
//! one after another on `peapod up`, beside `runc run` of a bundle of the
//! same busybox image measured in the same run.
//!
//! Run: `cargo build --release -p peapod -p peapod-bench && ./target/release/podstart`
//! (as root; needs docker-registry, skopeo, umoci and runc).

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use peapod_bench::{Registry, Server, ms, summarize};
use serde_json::json;

const PODS: usize = 100;

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "podstart"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "c", "image": image, "command": ["sleep", "3600"]}]},
    }))
    .expect("a valid pod")
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

/// Creates `name` and waits for it to run; returns the elapsed time.
async fn start_one(pods: &Api<Pod>, name: &str, image: &str) -> anyhow::Result<Duration> {
    let mut watch = pods
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={name}")),
            "0",
        )
        .await?
        .boxed();
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod(name, image))
        .await?;
    while let Some(event) = watch.try_next().await? {
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
            && running(&p)
        {
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("the watch on {name} ended")
}

/// An OCI bundle of the image that runs `/bin/true`, for runc.
fn runc_bundle(image: &str, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let layout = dir.join("layout");
    let ok = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:bench", layout.display()))
        .status()?
        .success();
    anyhow::ensure!(ok, "skopeo copy failed");
    let bundle = dir.join("bundle");
    let ok = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:bench", layout.display()))
        .arg(&bundle)
        .status()?
        .success();
    anyhow::ensure!(ok, "umoci unpack failed");
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = json!(["/bin/true"]);
    config["process"]["terminal"] = json!(false);
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    Ok(bundle)
}

fn runc_runs(bundle: &std::path::Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("peapod-bench-{}-{i}", std::process::id());
        let started = Instant::now();
        let ok = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .status()?
            .success();
        samples.push(started.elapsed());
        anyhow::ensure!(ok, "runc run failed");
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = Registry::start()?;
    let image = registry.push_busybox()?;
    let run_dir = tempfile::tempdir()?;
    let server = Server::up(vec![
        "--network-name".into(),
        format!("pb{:x}", std::process::id() & 0xffff),
        "--cluster-cidr".into(),
        "10.199.0.0/16".into(),
        "--run-dir".into(),
        run_dir.path().display().to_string(),
        "--kubelet-port".into(),
        "0".into(),
        "--insecure-registry".into(),
        registry.address.clone(),
    ])?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The node registers and the image is pulled once, outside the timing.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes
        .list(&Default::default())
        .await?
        .items
        .iter()
        .any(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    {
        anyhow::ensure!(Instant::now() < deadline, "the node did not become Ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start_one(&pods, "warmup", &image).await?;
    let mut samples = Vec::with_capacity(PODS);
    for i in 0..PODS {
        samples.push(start_one(&pods, &format!("bench-{i}"), &image).await?);
    }
    let peapod = summarize(samples);

    let work = tempfile::tempdir()?;
    let bundle = runc_bundle(&image, work.path())?;
    let runc = summarize(runc_runs(&bundle, PODS)?);

    println!("pod start latency, create -> Running, {PODS} pods one after another (image cached):");
    println!(
        "  peapod up   p50 {}  p99 {}  max {}",
        ms(peapod.p50),
        ms(peapod.p99),
        ms(peapod.max)
    );
    println!(
        "  runc run    p50 {}  p99 {}  max {}  (busybox /bin/true, same image)",
        ms(runc.p50),
        ms(runc.p99),
        ms(runc.max)
    );
    println!(
        "  ratio p50 peapod / runc: {:.2} (goal <= 1.0)",
        peapod.p50.as_secs_f64() / runc.p50.as_secs_f64()
    );
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &kube::api::ListParams::default().labels("bench=podstart"),
        )
        .await;
    let _ = pods
        .delete("warmup", &DeleteParams::default().grace_period(0))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}
