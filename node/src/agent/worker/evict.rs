//! Eviction for local storage (`../eviction.rs` says when): the pod's
//! containers are killed at once, as kubelet does for a pod over its
//! storage limits, the pod fails with reason `Evicted`, and what its
//! disk-backed emptyDirs held is freed. The pod object stays for its
//! owner to replace and for `kubectl describe`.

use std::time::{Duration, Instant};

use crate::agent::eviction;
use crate::agent::plan::Phase;

use super::Worker;

impl Worker {
    /// Until the next storage check is due, for a running pod with limits.
    pub(super) fn storage_wait(&self, now: Instant) -> Option<Duration> {
        let at = self.storage_check_at?;
        Some(
            at.saturating_duration_since(now)
                .max(Duration::from_millis(10)),
        )
    }

    /// Measures the pod's local storage when due and evicts it when it is
    /// over a limit.
    pub(super) async fn check_storage(&mut self) {
        let now = Instant::now();
        if self.finished.is_some() || self.sandbox.is_none() || !eviction::has_limits(&self.pod) {
            self.storage_check_at = None;
            return;
        }
        match self.storage_check_at {
            Some(at) if now < at => return,
            // The first check comes one interval after the pod started.
            None => {
                self.storage_check_at = Some(now + self.node.config.eviction_interval);
                return;
            }
            Some(_) => {}
        }
        self.storage_check_at = Some(now + self.node.config.eviction_interval);
        let runs: Vec<(String, Option<String>)> = self
            .app
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        let (pod, dir) = (self.pod.clone(), self.dir.clone());
        let measured =
            tokio::task::spawn_blocking(move || eviction::measure(&pod, &dir, &runs)).await;
        if let Ok(usage) = measured
            && let Some(message) = eviction::exceeded(&self.pod, &usage)
        {
            self.evict(message).await;
        }
    }

    pub(super) async fn evict(&mut self, message: String) {
        tracing::info!("pod {}: evicted: {message}", self.uid);
        self.node.event(&self.pod, "Warning", "Evicted", &message);
        self.evicted = Some(message);
        let running = self.running();
        self.stop_all(&running, Duration::ZERO, Instant::now(), true)
            .await;
        self.finish(Phase::Failed).await;
        let pod = self.pod.clone();
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || eviction::free_empty_dirs(&pod, &dir)).await;
    }
}
