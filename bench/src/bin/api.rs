//! API server benchmark: durable pod creates from 16 concurrent clients,
//! listing 10,000 pods, latency at a steady 1,000 writes/s, and watch
//! delivery latency. Run with `cargo run --release -p peapod-bench --bin api`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use peapod_bench::{Server, ms, summarize};
use serde_json::json;

const PODS: usize = 10_000;
const CLIENTS: usize = 16;
const STEADY_RATE: u64 = 1_000;
const STEADY_SECONDS: u64 = 5;

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "infinity"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .expect("pod")
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": "v"}}))
    .expect("configmap")
}

/// The peer: the same number of durable writes straight into etcd (what
/// kube-apiserver does at the bottom of every create), over its JSON gateway.
async fn etcd_puts(value: Vec<u8>) -> Option<(f64, peapod_bench::Summary)> {
    use base64::Engine;
    use http_body_util::BodyExt;
    let etcd = peapod_bench::Etcd::start()?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    let value = B64.encode(value);
    let url: hyper::Uri = format!("{}/v3/kv/put", etcd.url).parse().ok()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, next, value) =
                (client.clone(), url.clone(), next.clone(), value.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= PODS {
                        return lat;
                    }
                    let key = B64.encode(format!("/registry/pods/default/bench-{i}"));
                    let body = json!({"key": key, "value": value}).to_string();
                    let req = hyper::Request::post(url.clone())
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        .expect("request");
                    let t = Instant::now();
                    let resp = client.request(req).await.expect("etcd put");
                    let _ = resp.into_body().collect().await;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.ok()?);
    }
    Some((
        PODS as f64 / started.elapsed().as_secs_f64(),
        summarize(latencies),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // 1. Creates from concurrent clients.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let pods = pods.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= PODS {
                        return lat;
                    }
                    let t = Instant::now();
                    pods.create(&PostParams::default(), &pod(i))
                        .await
                        .expect("create");
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = started.elapsed();
    let rate = PODS as f64 / elapsed.as_secs_f64();
    let s = summarize(latencies);
    println!(
        "creates: {PODS} pods from {CLIENTS} clients in {:.2} s = {rate:.0} creates/s (goal >= 2000); p50 {} p99 {} max {}",
        elapsed.as_secs_f64(),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    let stored = pods.get("bench-0").await?;
    match etcd_puts(serde_json::to_vec(&stored)?).await {
        Some((etcd_rate, etcd)) => println!(
            "peer: etcd {} puts of the same pod from {CLIENTS} clients: {etcd_rate:.0} puts/s, p50 {} p99 {}; Peapod creates/s / etcd puts/s = {:.2}",
            PODS,
            ms(etcd.p50),
            ms(etcd.p99),
            rate / etcd_rate
        ),
        None => println!("peer: etcd not installed, no ratio"),
    }

    // 2. Listing everything.
    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await?;
        lists.push(t.elapsed());
        assert_eq!(l.items.len(), PODS);
    }
    let s = summarize(lists);
    println!("list: {PODS} pods p50 {} (5 lists)", ms(s.p50));

    // 3. Steady load with a watcher: write latency at 1,000 writes/s and
    //    the delay from sending a write to receiving its watch event.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let sent = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let mut watch = cms.watch(&WatchParams::default(), "0").await?.boxed();
    let watcher_sent = sent.clone();
    let total = (STEADY_RATE * STEADY_SECONDS) as usize;
    let watcher = tokio::spawn(async move {
        let mut delays = Vec::new();
        while let Some(e) = watch.next().await {
            if let Ok(WatchEvent::Added(cm)) = e {
                let seen = Instant::now();
                let name = cm.metadata.name.unwrap_or_default();
                if let Some(t) = watcher_sent.lock().expect("lock").get(&name) {
                    delays.push(seen.saturating_duration_since(*t));
                }
                if name == format!("steady-{}", total - 1) {
                    break;
                }
            }
        }
        delays
    });
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let cms = cms.clone();
        let sent = sent.clone();
        writes.push(tokio::spawn(async move {
            let name = format!("steady-{i}");
            let t = Instant::now();
            sent.lock().expect("lock").insert(name.clone(), t);
            cms.create(&PostParams::default(), &config_map(&name))
                .await
                .expect("create");
            t.elapsed()
        }));
    }
    let mut latencies = Vec::new();
    for w in writes {
        latencies.push(w.await?);
    }
    let s = summarize(latencies);
    println!(
        "steady {STEADY_RATE} writes/s for {STEADY_SECONDS} s: p50 {} p99 {} (goal p99 <= 10 ms; Kubernetes SLO p99 <= 1 s)",
        ms(s.p50),
        ms(s.p99)
    );
    let delays = tokio::time::timeout(Duration::from_secs(30), watcher).await??;
    let s = summarize(delays);
    println!(
        "watch delivery (write sent -> event received): p50 {} p99 {}",
        ms(s.p50),
        ms(s.p99)
    );
    Ok(())
}
