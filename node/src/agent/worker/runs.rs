//! One container run: pulled and started through its runtime, waited
//! for and probed, and recorded when it ends.

use std::collections::BTreeMap;
use std::time::Instant;

use kube::ResourceExt;
use peapod_runtimes::oci::{Exit, PodNamespaces};

use crate::agent::container::{Current, Terminated};
use crate::agent::launch::{self, LaunchError, PodContext};
use crate::agent::plan::{self, Probed, Slot};
use crate::agent::probes::{self, Outcome};
use crate::agent::run::Run;
use crate::agent::volumes;

use super::{Worker, slot_in};

impl Worker {
    pub(super) async fn launch(&mut self, slot: Slot) {
        let (Some(sb), Some(c)) = (self.sandbox.clone(), self.slot_spec(slot)) else {
            return;
        };
        let c = &c;
        let volumes = self.volumes.clone().unwrap_or_default();
        let id = slot_in(&mut self.init, &mut self.app, slot).next_id(&self.uid);
        let service_env: BTreeMap<String, String> = self.node.service_env(&self.pod).await;
        let addrs = self.addresses();
        let ctx = PodContext {
            pod: &self.pod,
            dir: &self.dir,
            namespaces: PodNamespaces {
                net: sb.net.clone(),
                ipc: sb.ipc.clone(),
                uts: sb.uts.clone(),
            },
            volumes: &volumes,
            sources: &self.sources,
            addrs: &addrs,
            service_env: &service_env,
            credentials: &self.credentials,
            log_rotation: self.node.config.container_log,
        };
        let began = Instant::now();
        let image = match launch::pull(&self.node, &ctx, c).await {
            Ok(img) => img,
            Err(e) => {
                self.launch_failed(slot, e).await;
                return;
            }
        };
        let state = slot_in(&mut self.init, &mut self.app, slot);
        state.id = Some(id.clone());
        state.image_id = Some(launch::image_id(&image));
        let restart_count = state.restart_count;
        state.save(&self.dir);
        let log = self.dir.log(&c.name, restart_count);
        let runtime_class = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref());
        let is_wasm = image.wasm.is_some() || runtime_class == Some("wasm");
        let pulled = began.elapsed();
        let started = self.runtime(is_wasm).start(&ctx, c, &image, &id, log).await;
        tracing::debug!(
            "pod {}/{}: container {} image in {pulled:?}, started in {:?}",
            self.ns(),
            self.pod.name_any(),
            c.name,
            began.elapsed() - pulled
        );
        let state = slot_in(&mut self.init, &mut self.app, slot);
        state.wasm = is_wasm;
        state.save(&self.dir);
        match started {
            Ok(running) => {
                self.node.event(
                    &self.pod,
                    "Normal",
                    "Created",
                    &format!("Created container {}", c.name),
                );
                self.node.event(
                    &self.pod,
                    "Normal",
                    "Started",
                    &format!("Started container {}", c.name),
                );
                let state = self.slot(slot);
                state.current = Current::Running(running.clone());
                state.not_before = None;
                self.run_started.insert(id, Instant::now());
                self.watch(&c.name, running);
            }
            Err(e) => {
                // Nothing runs: the run ends at once, counting as a failure.
                self.launch_failed(slot, e).await;
                volumes::unmount_all_under(&self.dir.container(&id));
                self.runtime(is_wasm).remove(&id);
            }
        }
    }

    pub(super) async fn launch_failed(&mut self, slot: Slot, e: LaunchError) {
        if !e.reported {
            self.node.event(
                &self.pod,
                "Warning",
                "Failed",
                &format!("Error: {}", e.message),
            );
        }
        let state = self.slot(slot);
        state.back_off(None);
        state.set_waiting(e.reason, Some(e.message));
    }

    /// Waits for the run's end and probes it meanwhile.
    pub(super) fn watch(&mut self, name: &str, run: Run) {
        let Some(spec) = self.container_spec(name) else {
            return;
        };
        let waiter = self
            .runtime(run.is_wasm())
            .wait(name, &run, self.tx.clone());
        let has_probes = spec.liveness_probe.is_some()
            || spec.readiness_probe.is_some()
            || spec.startup_probe.is_some();
        let probe_task = match (&self.sandbox, has_probes) {
            (Some(sb), true) => Some(
                probes::start(
                    probes::Target {
                        pod_ip: sb.ip,
                        container: spec.clone(),
                        run: run.id().to_string(),
                        wasm: run.is_wasm(),
                        oci: self.node.oci.clone(),
                        http: self.node.http.clone(),
                        events: self.events_tx.clone(),
                    },
                    self.tx.clone(),
                )
                .abort_handle(),
            ),
            _ => None,
        };
        if let Some(c) = self.state_mut(name) {
            c.stop_tasks();
            c.waiter = waiter;
            c.probes = probe_task;
            c.started = spec.startup_probe.is_none();
            c.ready = spec.readiness_probe.is_none() && c.started;
        }
    }

    pub(super) async fn exited(&mut self, name: &str, run: &str, exit: Exit) {
        let Some(spec) = self.container_spec(name) else {
            return;
        };
        let (log_attempt, wasm) = match self.state_mut(name) {
            Some(c) if c.id.as_deref() == Some(run) => (c.restart_count, c.wasm),
            _ => return,
        };
        let log = self.dir.log(name, log_attempt);
        let message = launch::termination_message(&self.dir, &spec, run, &log, exit.code != 0);
        let t = Terminated::from_exit(&exit, run, message);
        let ran_for = self.run_started.remove(run).map(|s| s.elapsed());
        if t.reason == "OOMKilled" {
            tracing::info!("pod {}: container {name} was OOM killed", self.uid);
        }
        if let Some(c) = self.state_mut(name) {
            c.ended(t, ran_for);
        }
        volumes::unmount_all_under(&self.dir.container(run));
        let _ = std::fs::remove_dir_all(self.dir.container(run));
        self.runtime(wasm).remove(run);
    }

    pub(super) async fn probed(&mut self, o: Outcome) {
        let Some(spec) = self.container_spec(&o.container) else {
            return;
        };
        let grace = plan::grace_period(&self.pod);
        let Some(c) = self.state_mut(&o.container) else {
            return;
        };
        if c.id.as_deref() != Some(o.run.as_str()) {
            return;
        }
        let running = match &c.current {
            Current::Running(r) => r.clone(),
            _ => return,
        };
        match plan::probed(o.kind, o.healthy, c.started, spec.readiness_probe.is_some()) {
            Probed::Ready(ready) => c.ready = ready,
            Probed::Started { ready } => {
                c.started = true;
                c.ready = ready;
            }
            Probed::Kill => {
                let what = o.kind.name().to_lowercase();
                let message = format!(
                    "Container {} failed {what} probe, will be restarted",
                    o.container
                );
                self.node.event(&self.pod, "Normal", "Killing", &message);
                self.runtime(running.is_wasm()).stop(running, grace);
            }
            Probed::Nothing => {}
        }
    }
}
