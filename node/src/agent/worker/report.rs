//! What the worker tells others: the pod's status to the API, and its
//! runs to the node's API (logs, exec).

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::agent::container::Current;
use crate::agent::plan::Phase;
use crate::agent::run::Run;
use crate::agent::status::{self, PodFacts};

use super::{RETRY, Worker};

impl Worker {
    pub(super) async fn report(&mut self) {
        // A pod that had already ended when this worker started keeps the
        // status it ended with: nothing of it runs to report on.
        if self.finished.is_some() && self.reported.is_none() && self.pod_was_terminal() {
            return;
        }
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.to_string()),
            host_ip: self.node.config.node_ip.to_string(),
            start_time: &self.start_time,
            blocked: self.blocked.clone(),
            init_done: self.init_done,
            phase_override: self.finished.map(Phase::as_str),
            evicted: self.evicted.as_deref(),
        };
        let status = status::build(&facts, &self.init, &self.app);
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.node.client.clone(), &self.ns());
        match pods
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(p) => {
                // The first Running report of a pod (not of one re-adopted
                // after an agent restart, whose stored phase is Running).
                let was_pending = self
                    .pod
                    .status
                    .as_ref()
                    .and_then(|st| st.phase.as_deref())
                    .is_none_or(|phase| phase == "Pending");
                if was_pending && status["phase"] == "Running" {
                    let created = self
                        .pod
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string());
                    let runtime = if self.app.iter().any(|c| c.wasm) {
                        "wasm"
                    } else {
                        "oci"
                    };
                    peapod_common::telemetry::Telemetry::global()
                        .pod_started(runtime, peapod_common::telemetry::since(created.as_deref()));
                }
                self.pod.status = p.status;
                self.reported = Some(status);
            }
            Err(e) => {
                tracing::debug!(
                    "pod {}/{}: status update: {e}",
                    self.ns(),
                    self.pod.name_any()
                );
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
    }

    pub(super) fn pod_was_terminal(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| matches!(p, "Succeeded" | "Failed"))
    }

    /// Makes what runs visible to the node's API (logs, exec).
    pub(super) fn publish(&self) {
        let runs = self
            .init
            .iter()
            .chain(&self.app)
            .map(|c| {
                let (usage, http) = match &c.current {
                    Current::Running(Run::Wasm(w)) => (Some(w.usage.clone()), w.http.clone()),
                    _ => (None, None),
                };
                (
                    c.name.clone(),
                    crate::agent::PodRun {
                        id: c.id.clone(),
                        restart_count: c.restart_count,
                        running: c.is_running(),
                        wasm: c.wasm,
                        usage,
                        http,
                    },
                )
            })
            .collect();
        self.node.table.lock().expect("lock").insert(
            (self.ns(), self.pod.name_any()),
            crate::agent::PodEntry {
                uid: self.uid.clone(),
                dir: self.dir.clone(),
                runs,
                pod_ip: self.sandbox.as_ref().map(|s| s.ip),
            },
        );
    }
}
