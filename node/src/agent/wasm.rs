//! Wasm containers of a pod: they run in the agent's process, on a small
//! async runtime of the pod's own whose threads have entered the pod's
//! network namespace, so that the guest's sockets (its HTTP listener,
//! wasi:sockets, outgoing wasi:http) belong to the pod: it is reachable on
//! the pod IP and talks to the pod's other containers over localhost.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use nix::sched::{CloneFlags, setns};
use peapod_common::knative;
use peapod_runtimes::image::Image;
use peapod_runtimes::oci::Exit;
use peapod_runtimes::wasm::{CommandConfig, HttpConfig, HttpStats, Usage, WasmRuntime};
use tokio::sync::mpsc;

use super::env;
use super::launch::{LaunchError, PodContext, command_line};
use super::run::WasmRun;
use super::worker::Msg;

/// The pod's runtime for Wasm containers; shut down (without waiting)
/// when dropped, which ends the pod's Wasm instances.
pub struct PodRuntime(Option<tokio::runtime::Runtime>);

impl PodRuntime {
    /// A runtime whose threads all live in the network namespace at `netns`.
    pub fn new(netns: &Path, name: &str) -> std::io::Result<PodRuntime> {
        let ns = Arc::new(File::open(netns)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name(format!("wasm-{name}"))
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET) {
                    tracing::error!("a Wasm thread could not enter its pod's network: {e}");
                }
            })
            .build()?;
        Ok(PodRuntime(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("a live runtime").handle()
    }
}

impl Drop for PodRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn exit(
    code: i32,
    signal: Option<i32>,
    oom: bool,
    started_at: &str,
    message: Option<String>,
) -> Exit {
    Exit {
        code,
        signal,
        oom_killed: oom,
        started_at: Some(started_at.to_string()),
        finished_at: peapod_runtimes::logs::timestamp(),
        error: None,
        message,
    }
}

pub(super) fn limits(c: &Container) -> (Option<u64>, Option<u64>) {
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let quantity = |name: &str, f: fn(&str) -> Option<i64>| {
        limits
            .get(name)
            .and_then(|q| f(&q.0))
            .map(|v| v.max(1) as u64)
    };
    (
        quantity("memory", peapod_common::quantity::value),
        quantity("cpu", peapod_common::quantity::milli),
    )
}

/// How many requests an HTTP function's instance serves at once and how
/// long one may run, from the pod's annotations (the API server has
/// checked them), else at most 1000 at once and Knative's 300 s.
pub(super) fn request_bounds(pod: &Pod) -> (usize, Duration) {
    let annotation = |name: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
    };
    let concurrency = annotation(knative::CONCURRENCY_ANNOTATION).map_or(1000, |n| n as usize);
    let timeout = annotation(knative::REQUEST_TIMEOUT_ANNOTATION)
        .unwrap_or(knative::DEFAULT_REQUEST_TIMEOUT_SECONDS)
        .min(knative::MAX_REQUEST_TIMEOUT_SECONDS);
    (concurrency, Duration::from_secs(timeout))
}

/// Starts run `id` of Wasm container `c`: compiles (or loads the cached
/// code of) its component, then runs it as a command or serves it as an
/// HTTP function on its container port; its end is reported to the worker.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    wasm: &WasmRuntime,
    ctx: &PodContext<'_>,
    c: &Container,
    image: &Image,
    id: &str,
    log: std::path::PathBuf,
    runtime: &tokio::runtime::Handle,
    tx: mpsc::UnboundedSender<Msg>,
) -> Result<WasmRun, LaunchError> {
    let Some(module) = image.wasm.clone() else {
        return Err(LaunchError::new(
            "CreateContainerError",
            format!(
                "image {} is not a Wasm artifact (runtimeClassName: wasm needs one)",
                image.reference
            ),
        ));
    };
    let env: Vec<(String, String)> =
        env::resolve(ctx.pod, c, &[], ctx.sources, ctx.addrs, ctx.service_env)
            .map_err(|e| LaunchError::new("CreateContainerConfigError", e.to_string()))?
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
    let digest = image.digest.clone();
    let loader = wasm.clone();
    let loaded = tokio::task::spawn_blocking(move || loader.load(&digest, &module))
        .await
        .map_err(|e| LaunchError::new("CreateContainerError", e.to_string()))?
        .map_err(|e| LaunchError::new("CreateContainerError", e.to_string()))?;
    let mut preopens = Vec::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(host) = ctx.volumes.get(&m.name) else {
            return Err(LaunchError::new(
                "CreateContainerConfigError",
                format!("volume \"{}\" not found in the pod", m.name),
            ));
        };
        // A subPath is pinned as for OCI containers: the preopen is of
        // what was checked to lie inside the volume.
        let host = match m.sub_path.as_ref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let pinned = ctx.dir.container(id).join("subpaths").join(i.to_string());
                super::subpath::pin(host, sub, &pinned).map_err(|e| {
                    LaunchError::new(
                        "CreateContainerConfigError",
                        format!("volume \"{}\": {e}", m.name),
                    )
                })?;
                pinned
            }
            None => host.clone(),
        };
        let read_only =
            m.read_only.unwrap_or(false) || super::volumes::agent_written(ctx.pod, &m.name);
        preopens.push((host, m.mount_path.clone(), read_only));
    }
    let (memory_limit, cpu_millis) = limits(c);
    let started_at = peapod_runtimes::logs::timestamp();
    let stop = Arc::new(tokio::sync::Notify::new());
    let usage = Arc::new(Usage::default());
    let http_stats = loaded.is_http().then(|| Arc::new(HttpStats::default()));
    let run = WasmRun {
        http: http_stats.clone(),
        id: id.to_string(),
        started_at: started_at.clone(),
        stop: stop.clone(),
        usage: usage.clone(),
    };
    let (name, run_id, wasm) = (c.name.clone(), id.to_string(), wasm.clone());
    let report = move |exit: Exit| {
        let _ = tx.send(Msg::Exited {
            container: name,
            run: run_id,
            exit,
        });
    };
    if loaded.is_http() {
        let port = c
            .ports
            .iter()
            .flatten()
            .find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .map(|p| p.container_port)
            .ok_or_else(|| {
                LaunchError::new(
                    "CreateContainerConfigError",
                    "an HTTP function needs a containerPort to be served on",
                )
            })?;
        let (max_concurrent_requests, timeout) = request_bounds(ctx.pod);
        let config = HttpConfig {
            env,
            preopens,
            log,
            log_rotation: ctx.log_rotation,
            memory_limit,
            cpu_millis,
            request_timeout: Some(timeout),
            max_concurrent_requests,
            usage,
            stats: http_stats.unwrap_or_default(),
            ..Default::default()
        };
        runtime.spawn(async move {
            // Bound here, on a thread in the pod's network namespace.
            let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port as u16)).await {
                Ok(l) => l,
                Err(e) => {
                    let message = format!("binding port {port}: {e}");
                    return report(exit(128, None, false, &started_at, Some(message)));
                }
            };
            tokio::select! {
                served = wasm.serve_http(&loaded, listener, config) => {
                    let message = served.err().map(|e| e.to_string());
                    report(exit(if message.is_some() { 128 } else { 0 }, None, false, &started_at, message));
                }
                () = stop.notified() => report(exit(137, Some(9), false, &started_at, None)),
            }
        });
    } else {
        let mut args = command_line(
            c,
            image,
            &env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        );
        if c.command.is_none() {
            // argv[0] is the program's name; the container's stands in.
            args.insert(0, c.name.clone());
        }
        let config = CommandConfig {
            args,
            env,
            preopens,
            log,
            log_rotation: ctx.log_rotation,
            memory_limit,
            cpu_millis,
            usage,
            ..Default::default()
        };
        runtime.spawn(async move {
            tokio::select! {
                outcome = wasm.run_command(&loaded, config) => match outcome {
                    Ok(o) => report(exit(o.code, None, o.oom, &started_at, o.trap)),
                    Err(e) => report(exit(128, None, false, &started_at, Some(e.to_string()))),
                },
                () = stop.notified() => report(exit(137, Some(9), false, &started_at, None)),
            }
        });
    }
    Ok(run)
}
