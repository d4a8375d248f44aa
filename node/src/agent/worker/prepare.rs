//! The pod's sandbox and volumes: made before its containers, and its
//! API-fed volumes brought up to date while it runs.

use std::time::Instant;

use kube::ResourceExt;

use crate::agent::sandbox;
use crate::agent::volumes::{self, ClaimPaths};

use super::{RETRY, Worker};

impl Worker {
    /// Creates the sandbox and volumes if they are not there yet.
    pub(super) async fn ensure_sandbox(&mut self) -> Result<(), (String, String)> {
        let (maps, secrets) = crate::agent::env::references(&self.pod);
        let tokens = std::mem::take(&mut self.sources.tokens);
        self.sources = self.node.fetch_sources(&self.ns(), &maps, &secrets).await;
        self.sources.tokens = tokens;
        self.sources
            .tokens
            .refresh(&self.node.client, &self.pod)
            .await;
        self.credentials = self.node.pull_credentials(&self.pod).await;
        if self.sandbox.is_none() {
            let hostname = sandbox::hostname(&self.pod);
            let made = self
                .network()
                .create(&self.uid, &hostname, self.host_network())
                .await;
            let sb = made.map_err(|e| {
                (
                    "FailedCreatePodSandBox".to_string(),
                    format!("Failed to create pod sandbox: {e}"),
                )
            })?;
            let limits = peapod_runtimes::cgroups::PodLimits {
                pids: self.node.config.pod_pids_limit,
            };
            peapod_runtimes::cgroups::Hierarchies::host()
                .create_pod(&sandbox::cgroup_parent(&self.uid), &limits)
                .map_err(|e| {
                    (
                        "FailedCreatePodSandBox".to_string(),
                        format!("Failed to create the pod's cgroup: {e}"),
                    )
                })?;
            self.sandbox = Some(sb);
        }
        let ip = self.sandbox.as_ref().expect("just made").ip;
        sandbox::write_files(&self.dir, &self.pod, ip, &self.node.config)
            .map_err(|e| ("FailedCreatePodSandBox".to_string(), e.to_string()))?;
        if self.volumes.is_none() {
            let claims: ClaimPaths = self.node.claim_paths(&self.pod).await;
            let prepared = volumes::prepare(
                &self.pod,
                &self.dir,
                &self.sources,
                &claims,
                &self.addresses(),
            )
            .map_err(|e| {
                (
                    "FailedMount".to_string(),
                    format!("MountVolume.SetUp failed: {e}"),
                )
            })?;
            self.volumes = Some(prepared);
            if volumes::any_refreshable(&self.pod) {
                self.refresh_at = Some(Instant::now() + self.node.config.sync_frequency);
            }
        }
        Ok(())
    }

    /// Brings ConfigMap, Secret, downward API and projected volumes up to
    /// date once their refresh is due.
    pub(super) async fn refresh_volumes(&mut self) {
        self.refresh_at = Some(Instant::now() + self.node.config.sync_frequency);
        let (maps, secrets) = crate::agent::env::references(&self.pod);
        let fresh = self.node.fetch_sources(&self.ns(), &maps, &secrets).await;
        // What could not be read (gone, or the API unreachable) keeps the
        // data it had: volumes keep their files, as on Kubernetes.
        for (name, data) in fresh.config_maps.into_iter().filter(|(_, d)| d.is_some()) {
            self.sources.config_maps.insert(name, data);
        }
        for (name, data) in fresh.secrets.into_iter().filter(|(_, d)| d.is_some()) {
            self.sources.secrets.insert(name, data);
        }
        self.sources
            .tokens
            .refresh(&self.node.client, &self.pod)
            .await;
        if let Err(e) = volumes::refresh(&self.pod, &self.dir, &self.sources, &self.addresses()) {
            tracing::debug!(
                "pod {}/{}: refreshing volumes: {e}",
                self.ns(),
                self.pod.name_any()
            );
        }
    }

    /// Makes the sandbox and volumes; on failure the pod shows why and
    /// the step is retried after a pause.
    pub(super) async fn prepare(&mut self) -> bool {
        let began = Instant::now();
        let ensured = self.ensure_sandbox().await;
        tracing::debug!(
            "pod {}/{}: sandbox and volumes in {:?}",
            self.ns(),
            self.pod.name_any(),
            began.elapsed()
        );
        if let Err((reason, message)) = ensured {
            if self.blocked.as_ref().map(|b| &b.1) != Some(&message) {
                self.node.event(&self.pod, "Warning", &reason, &message);
            }
            self.blocked = Some(("ContainerCreating".into(), message));
            self.retry_at = Some(Instant::now() + RETRY);
            return false;
        }
        self.blocked = None;
        true
    }
}
