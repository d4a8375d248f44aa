//! Probes of one container run: startup first (when set), then liveness and
//! readiness side by side, each every `periodSeconds` after
//! `initialDelaySeconds`, with httpGet, tcpSocket or exec handlers. A probe
//! reports to the pod worker only when it crosses its threshold; each
//! failure is an `Unhealthy` event, as with the kubelet.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use peapod_common::events::Kind;
use peapod_runtimes::oci::Oci;
use tokio::sync::mpsc;

use super::worker::Msg;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What a probe reports when it crosses a threshold.
#[derive(Debug)]
pub struct Outcome {
    pub container: String,
    pub run: String,
    pub kind: ProbeKind,
    pub healthy: bool,
}

/// How a probe reaches the container.
#[derive(Clone)]
pub struct Target {
    pub pod_ip: Ipv4Addr,
    pub container: Container,
    /// The runtime id of the run being probed (for exec probes).
    pub run: String,
    /// A Wasm run: nothing can be executed in it.
    pub wasm: bool,
    pub oci: Oci,
    pub http: reqwest::Client,
    /// Publishes an event about the pod.
    pub events: mpsc::UnboundedSender<(Kind, String, String)>,
}

/// Resolves a named or numeric port against the container's ports.
pub fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Runs one probe once; `Err` carries the failure message.
pub async fn check(probe: &Probe, t: &Target) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(h) = &probe.http_get {
        let port = port(&t.container, &h.port).ok_or("invalid port")?;
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = h.host.clone().unwrap_or_else(|| t.pod_ip.to_string());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        let mut req = t.http.get(&url).timeout(timeout);
        for header in h.http_headers.iter().flatten() {
            req = req.header(&header.name, &header.value);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("Get \"{url}\": {}", error_chain(&e)))?;
        let code = resp.status().as_u16();
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(s) = &probe.tcp_socket {
        let port = port(&t.container, &s.port).ok_or("invalid port")?;
        let host: Ipv4Addr = s
            .host
            .as_ref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(t.pod_ip);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(e) = &probe.exec {
        if t.wasm {
            return Err("exec probes cannot run in a WebAssembly container".into());
        }
        let command = e.command.clone().unwrap_or_default();
        let mut cmd = t.oci.exec_command(&t.run, &command);
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| format!("command {command:?} timed out"))?
            .map_err(|e| e.to_string())?;
        return if out.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "command {command:?} exited with {}: {}",
                out.status.code().unwrap_or(-1),
                text.trim()
            ))
        };
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Probes `probe` until it reaches a verdict that matters: for startup the
/// first success (or failure threshold), for the others every change.
/// Returns whether it ended healthy (startup) or when liveness failed.
async fn run_one(probe: Probe, kind: ProbeKind, t: Target, tx: mpsc::UnboundedSender<Msg>) -> bool {
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    tokio::time::sleep(Duration::from_secs(
        probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
    ))
    .await;
    let (mut failures, mut successes) = (0, 0);
    // Readiness starts out false; liveness and startup start out fine.
    let mut healthy = kind != ProbeKind::Readiness;
    loop {
        match check(&probe, &t).await {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if successes >= success_threshold && (!healthy || kind == ProbeKind::Startup) {
                    healthy = true;
                    let _ = tx.send(Msg::Probe(Outcome {
                        container: t.container.name.clone(),
                        run: t.run.clone(),
                        kind,
                        healthy: true,
                    }));
                    if kind == ProbeKind::Startup {
                        return true;
                    }
                }
            }
            Err(message) => {
                successes = 0;
                failures += 1;
                let _ = t.events.send((
                    Kind::Warning,
                    "Unhealthy".into(),
                    format!("{} probe failed: {message}", kind.name()),
                ));
                if failures >= failure_threshold && healthy {
                    healthy = false;
                    let _ = tx.send(Msg::Probe(Outcome {
                        container: t.container.name.clone(),
                        run: t.run.clone(),
                        kind,
                        healthy: false,
                    }));
                    if kind != ProbeKind::Readiness {
                        return false;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Runs every probe of a container run; the returned task ends with it.
pub fn start(t: Target, tx: mpsc::UnboundedSender<Msg>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = t.container.clone();
        if let Some(p) = c.startup_probe.clone()
            && !run_one(p, ProbeKind::Startup, t.clone(), tx.clone()).await
        {
            return;
        }
        let liveness = c
            .liveness_probe
            .clone()
            .map(|p| run_one(p, ProbeKind::Liveness, t.clone(), tx.clone()));
        let readiness = c
            .readiness_probe
            .clone()
            .map(|p| run_one(p, ProbeKind::Readiness, t.clone(), tx.clone()));
        tokio::join!(
            async {
                if let Some(l) = liveness {
                    l.await;
                }
            },
            async {
                if let Some(r) = readiness {
                    r.await;
                }
            }
        );
    })
}
