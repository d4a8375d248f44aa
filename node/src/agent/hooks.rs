//! Lifecycle hooks: `preStop` runs before a container is asked to stop
//! (within the grace period), with exec or httpGet handlers.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::run::Run;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::NodeCtx;

async fn run_handler(
    node: &NodeCtx,
    c: &Container,
    h: &LifecycleHandler,
    run: &Run,
    pod_ip: Option<Ipv4Addr>,
) {
    if let Some(e) = &h.exec {
        if run.is_wasm() {
            return;
        }
        let command = e.command.clone().unwrap_or_default();
        let mut cmd = node.oci.exec_command(run.id(), &command);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let _ = cmd.status().await;
    } else if let (Some(g), Some(ip)) = (&h.http_get, pod_ip) {
        let Some(port) = super::probes::port(c, &g.port) else {
            return;
        };
        let scheme = g.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = g.host.clone().unwrap_or_else(|| ip.to_string());
        let url = format!(
            "{scheme}://{host}:{port}{}",
            g.path.as_deref().unwrap_or("/")
        );
        let _ = node.http.get(url).send().await;
    } else if let Some(s) = &h.sleep {
        tokio::time::sleep(std::time::Duration::from_secs(s.seconds.max(0) as u64)).await;
    }
}

/// Runs the container's preStop hook, if any, until done or `deadline`.
pub async fn pre_stop(
    node: &NodeCtx,
    c: &Container,
    run: &Run,
    pod_ip: Option<Ipv4Addr>,
    deadline: Instant,
) {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        return;
    };
    let budget = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(budget, run_handler(node, c, h, run, pod_ip)).await;
}
