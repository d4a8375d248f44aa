//! Cold starts of scale-to-zero functions: a request through the Ingress
//! to a Knative Service with no pod, timed from sending it to its answer
//! (the activator asks for the Revision's Deployment to scale from zero,
//! and answers from the function's standby when it has one, else holds the
//! request until the pod runs), and to the pod being ready. Fifty cold starts each for the Wasm hello
//! function and for a busybox `httpd` (OCI) Revision, and beside them, when
//! a wasmtime binary is at hand (`$WASMTIME` or on the PATH), `wasmtime
//! serve`'s process start to first response for the same component.
//!
//! Run as root: `cargo build --release -p peapod -p peapod-bench &&
//! ./target/release/coldstart`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use peapod_bench::{Registry, Server, hello_component, ms, node_flags, summarize};
use serde_json::json;

const COLD_STARTS: usize = 50;

/// One HTTP/1.0 request; the status code.
fn request(address: &str, host: &str) -> anyhow::Result<u16> {
    Ok(request_text(address, host)?.0)
}

/// One HTTP/1.0 request; the status code and the whole reply.
fn request_text(address: &str, host: &str) -> anyhow::Result<(u16, String)> {
    let mut conn = std::net::TcpStream::connect(address)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(conn, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

fn ksvc(name: &str, image: &str, command: Option<&[&str]>) -> String {
    let mut container = json!({"image": image, "ports": [{"containerPort": 8080}]});
    if let Some(c) = command {
        container["command"] = json!(c);
    }
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [container], "terminationGracePeriodSeconds": 1}}},
    })
    .to_string()
}

fn kubectl(server: &Server, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.dir.path().join("kubeconfig"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    anyhow::ensure!(child.wait()?.success(), "kubectl {args:?} failed");
    Ok(())
}

/// The ready addresses in the function's Endpoints.
async fn ready_addresses(endpoints: &Api<Endpoints>, name: &str) -> anyhow::Result<usize> {
    Ok(endpoints
        .get_opt(name)
        .await?
        .and_then(|e| e.subsets)
        .unwrap_or_default()
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum())
}

/// Scales the function's Deployment to zero and waits until no pod is
/// left and its Service has no endpoint (traffic goes to the activator).
async fn to_zero(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let deployment = format!("{name}-00001-deployment");
    deployments
        .patch_scale(
            &deployment,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let selector = format!("serving.knative.dev/service={name}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = pods.list(&ListParams::default().labels(&selector)).await?;
        if left.items.is_empty() && ready_addresses(&endpoints, name).await? == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} did not reach zero");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The node's proxies see the empty endpoints.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// How long after `start` the function's Service first has a ready
/// endpoint (its pod is Ready and the Endpoints controller wrote it),
/// polled every 2 ms.
async fn pod_ready_after(
    client: &kube::Client,
    name: &str,
    start: Instant,
) -> anyhow::Result<Duration> {
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let deadline = start + Duration::from_secs(120);
    loop {
        if ready_addresses(&endpoints, name).await? > 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} got no ready pod");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Cold requests: the time to each answer and to the pod being ready.
async fn cold_starts(
    server: &Server,
    client: &kube::Client,
    name: &str,
    ingress: &str,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let host = format!("{name}.default.example.com");
    // Ready once: pulled, compiled, answering.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !request(ingress, &host).is_ok_and(|c| c == 200) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} never answered; log in {}",
            server.dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut samples = Vec::with_capacity(COLD_STARTS);
    let mut pods = Vec::with_capacity(COLD_STARTS);
    for _ in 0..COLD_STARTS {
        to_zero(client, name).await?;
        let start = Instant::now();
        let (code, reply) = request_text(ingress, &host)?;
        samples.push(start.elapsed());
        pods.push(pod_ready_after(client, name, start).await?);
        if code != 200 {
            let log = std::fs::read_to_string(server.dir.path().join("peapod.log"))?;
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            anyhow::bail!(
                "a cold request to {name} answered {code} after {:?}: {reply}; the log ends:\n{}",
                start.elapsed(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    Ok((samples, pods))
}

/// `wasmtime serve` started, then asked once: process start to answer.
fn wasmtime_first_response(component: &PathBuf) -> Option<Vec<Duration>> {
    let bin = std::env::var("WASMTIME").unwrap_or_else(|_| "wasmtime".into());
    let mut samples = Vec::new();
    for i in 0..COLD_STARTS {
        let port = 23000 + (std::process::id() % 500) as u16 * 2 + (i % 2) as u16;
        let address = format!("127.0.0.1:{port}");
        let start = Instant::now();
        let mut child = Command::new(&bin)
            .args(["serve", "-Scli", "--addr", &address])
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let answered = loop {
            if let Ok(200) = request(&address, "localhost") {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break false;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let took = start.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        if !answered {
            return None;
        }
        samples.push(took);
    }
    Some(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = Registry::start()?;
    let busybox = registry.push_busybox()?;
    registry.push_wasm_samples()?;
    let run_dir = tempfile::tempdir()?;
    let name = format!("cb{:x}", std::process::id() & 0xffff);
    let ingress_port = 24000 + (std::process::id() % 1000) as u16 * 2;
    let mut flags = node_flags(
        &name,
        "10.196.0.0/16",
        run_dir.path(),
        &registry.address,
        ingress_port,
    );
    // The benchmark scales to zero itself.
    flags.extend([
        "--scale-to-zero-grace-period".to_string(),
        "3600".to_string(),
    ]);
    let server = Server::up(flags)?;
    let client = server.client().await?;
    let ingress = format!("127.0.0.1:{ingress_port}");
    let wasm_image = format!("{}/samples/hello-http:v1", registry.address);
    kubectl(
        &server,
        &["apply", "-f", "-"],
        Some(&ksvc("wasm", &wasm_image, None)),
    )?;
    let httpd: &[&str] = &[
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    ];
    kubectl(
        &server,
        &["apply", "-f", "-"],
        Some(&ksvc("oci", &busybox, Some(httpd))),
    )?;

    let (wasm, wasm_pod) = cold_starts(&server, &client, "wasm", &ingress).await?;
    let (wasm, wasm_pod) = (summarize(wasm), summarize(wasm_pod));
    let (oci, oci_pod) = cold_starts(&server, &client, "oci", &ingress).await?;
    let (oci, oci_pod) = (summarize(oci), summarize(oci_pod));
    let component = hello_component();
    let peer = wasmtime_first_response(&component).map(summarize);

    println!("cold request through the Ingress from zero pods, {COLD_STARTS} cold starts each");
    println!(
        "  Wasm Revision:             p50 {} / p99 {}   (goal p50 <= 10 ms, p99 <= 50 ms)",
        ms(wasm.p50),
        ms(wasm.p99)
    );
    println!(
        "  OCI (busybox httpd):       p50 {} / p99 {}",
        ms(oci.p50),
        ms(oci.p99)
    );
    println!(
        "request sent -> the Revision's pod Ready in its Endpoints (the whole Kubernetes path)"
    );
    println!(
        "  Wasm Revision:             p50 {} / p99 {}",
        ms(wasm_pod.p50),
        ms(wasm_pod.p99)
    );
    println!(
        "  OCI (busybox httpd):       p50 {} / p99 {}",
        ms(oci_pod.p50),
        ms(oci_pod.p99)
    );
    match peer {
        Some(p) => println!(
            "  wasmtime serve, process start to first response: p50 {} / p99 {}; ratio Wasm p50 / wasmtime {:.2}",
            ms(p.p50),
            ms(p.p99),
            wasm.p50.as_secs_f64() / p.p50.as_secs_f64()
        ),
        None => println!("  wasmtime serve: not run (no wasmtime binary; set $WASMTIME)"),
    }
    println!("  Knative's published cold start: 0.8-4 s");
    Ok(())
}
