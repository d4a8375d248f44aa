//! How a pod ends: for good (its phase is final, its files stay for
//! logs), deleted (its containers stopped within the grace period and
//! everything of it removed), or left running when the agent stops.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};

use crate::agent::NodeCtx;
use crate::agent::container::Current;
use crate::agent::plan::{self, Phase};
use crate::agent::run::Run;
use crate::agent::sandbox::{self, PodDir};
use crate::agent::volumes;

use super::{Msg, Worker};

impl Worker {
    /// The pod object went from the API (a forced delete): stop at once.
    pub(super) async fn gone(&mut self) {
        if let Some(t) = plan::termination(&self.pod, true) {
            self.terminate(t).await;
        }
    }

    /// The pod ended for good: its network goes, its files stay for logs.
    pub(super) async fn finish(&mut self, phase: Phase) {
        self.finished = Some(phase);
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
            c.ready = false;
        }
        self.wasm.shut_down();
        self.network().remove(&self.uid).await;
    }

    /// Stops the pod's containers (gracefully when the pod was deleted with
    /// a grace period), removes everything of it, and lets the API drop it.
    pub(super) async fn terminate(&mut self, how: plan::Termination) {
        let plan::Termination { grace, graceful } = how;
        let deadline = Instant::now() + grace;
        let running = self.running();
        for (name, r) in &running {
            self.node.event(
                &self.pod,
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
            );
            if graceful && let Some(spec) = self.container_spec(name) {
                crate::agent::hooks::pre_stop(
                    &self.node,
                    &spec,
                    r,
                    self.sandbox.as_ref().map(|s| s.ip),
                    deadline,
                )
                .await;
            }
        }
        self.stop_all(&running, grace, deadline, false).await;
        self.cleanup().await;
        self.node
            .table
            .lock()
            .expect("lock")
            .remove(&(self.ns(), self.pod.name_any()));
        if graceful {
            let pods: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.ns());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = pods.delete(&self.pod.name_any(), &params).await {
                tracing::debug!(
                    "pod {}/{}: final delete: {e}",
                    self.ns(),
                    self.pod.name_any()
                );
            }
        }
    }

    /// What runs now, by container name.
    pub(super) fn running(&self) -> Vec<(String, Run)> {
        self.init
            .iter()
            .chain(&self.app)
            .filter_map(|c| match &c.current {
                Current::Running(r) => Some((c.name.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// Stops `running` (ended after `grace` if they do not stop) and waits
    /// until they end, at most 10 s past `deadline`; with `record`, each
    /// end is recorded as the container's (it shows in the status).
    pub(super) async fn stop_all(
        &mut self,
        running: &[(String, Run)],
        grace: Duration,
        deadline: Instant,
        record: bool,
    ) {
        for (_, r) in running {
            self.runtime(r.is_wasm()).stop(r.clone(), grace);
        }
        // The stop escalates to SIGKILL itself.
        let mut left: Vec<String> = running.iter().map(|(_, r)| r.id().to_string()).collect();
        let hard_deadline = deadline + Duration::from_secs(10);
        while !left.is_empty() && Instant::now() < hard_deadline {
            let wait = hard_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Some(Msg::Exited {
                    container,
                    run,
                    exit,
                })) => {
                    left.retain(|r| r != &run);
                    if record {
                        self.exited(&container, &run, exit).await;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Removes every trace of the pod from the node.
    pub(super) async fn cleanup(&mut self) {
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
        }
        self.wasm.shut_down();
        remove_pod(&self.node, &self.uid).await;
    }

    /// The agent stops: containers keep running, tasks end.
    pub(super) fn detach(&mut self) {
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
        }
    }
}

/// Removes a pod's runs, mounts, network, cgroups and files.
pub async fn remove_pod(node: &NodeCtx, uid: &str) {
    let dir = PodDir::new(&node.config, uid);
    let prefix = crate::agent::container::run_id(uid, "", 0);
    let prefix = prefix.split('-').next().unwrap_or_default().to_string();
    for id in node.oci.ids() {
        if id.starts_with(&format!("{prefix}-")) {
            if let Some(r) = node.oci.running(&id) {
                node.oci.signal(&r, nix::sys::signal::Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), node.oci.wait(&r)).await;
            }
            node.oci.remove(&id);
        }
    }
    volumes::unmount_all_under(dir.path());
    node.network.remove(uid).await;
    sandbox::remove_cgroup(uid);
    if let Err(e) = std::fs::remove_dir_all(dir.path())
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("removing {}: {e}", dir.path().display());
    }
}
