//! Re-adoption: what a previous agent left running for a pod (its
//! sandbox, its containers' runs and their records) becomes the worker's
//! state again, so that an agent restart disturbs no container.

use crate::agent::container::{ContainerState, Current, Terminated};
use crate::agent::plan::Phase;
use crate::agent::run::Run;
use crate::agent::volumes;

use super::{Worker, now};

impl Worker {
    /// Picks up what a previous agent left running for this pod.
    pub(super) fn adopt(&mut self) {
        self.finished = (self.pod.status.as_ref())
            .and_then(|s| Phase::parse(s.phase.as_deref()?))
            .filter(|p| p.is_terminal());
        self.sandbox = self.network().existing(&self.uid, self.host_network());
        let reported = self.pod.status.clone().unwrap_or_default();
        let reported_statuses: Vec<_> = reported
            .init_container_statuses
            .iter()
            .flatten()
            .chain(reported.container_statuses.iter().flatten())
            .cloned()
            .collect();
        let names: Vec<String> = self
            .init
            .iter()
            .chain(&self.app)
            .map(|c| c.name.clone())
            .collect();
        let mut any_app = false;
        for name in names {
            let Some(record) = ContainerState::load(&self.dir, &name) else {
                continue;
            };
            let oci = self.node.oci.clone();
            let dir = self.dir.clone();
            let reported = reported_statuses.iter().find(|s| s.name == name).cloned();
            let is_app = self.app.iter().any(|c| c.name == name);
            let uid = self.uid.clone();
            let c = self.state_mut(&name).expect("known container");
            c.restart_count = record.restart_count;
            c.id = Some(record.id.clone());
            c.image_id = record.image_id;
            c.last_terminated = reported
                .as_ref()
                .and_then(|s| s.last_state.as_ref()?.terminated.as_ref())
                .map(|t| Terminated {
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: t.reason.clone().unwrap_or_default(),
                    message: t.message.clone(),
                    started_at: t.started_at.as_ref().map(|x| x.0.to_string()),
                    finished_at: t
                        .finished_at
                        .as_ref()
                        .map(|x| x.0.to_string())
                        .unwrap_or_default(),
                    container_id: t.container_id.clone(),
                });
            any_app |= is_app;
            c.wasm = record.wasm;
            let was_running = reported
                .as_ref()
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some());
            if record.wasm && was_running {
                // Wasm instances lived in the previous agent: this run ended
                // with it, and the restart policy decides what comes next.
                c.current = Current::Terminated(Terminated {
                    exit_code: 137,
                    signal: Some(9),
                    reason: "Error".into(),
                    message: Some("the node agent restarted".into()),
                    started_at: None,
                    finished_at: now(),
                    container_id: Some(crate::agent::container::container_id(&record.id)),
                });
            } else if let Some(running) = oci.running(&record.id) {
                tracing::info!("pod {uid}: re-adopting running container {name}");
                c.current = Current::Running(Run::Oci(running));
            } else if let Some(exit) = oci.exit(&record.id) {
                c.current = Current::Terminated(Terminated::from_exit(&exit, &record.id, None));
                oci.remove(&record.id);
                volumes::unmount_all_under(&dir.container(&record.id));
            } else if let Some(t) = reported
                .as_ref()
                .and_then(|s| s.state.as_ref()?.terminated.as_ref())
            {
                c.current = Current::Terminated(Terminated {
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: t.reason.clone().unwrap_or_default(),
                    message: t.message.clone(),
                    started_at: t.started_at.as_ref().map(|x| x.0.to_string()),
                    finished_at: t
                        .finished_at
                        .as_ref()
                        .map(|x| x.0.to_string())
                        .unwrap_or_default(),
                    container_id: t.container_id.clone(),
                });
            }
        }
        if any_app {
            self.init_done = true;
        }
        // Runs found alive need their waiters and probes again.
        let running: Vec<(String, Run)> = self
            .init
            .iter()
            .chain(&self.app)
            .filter_map(|c| match &c.current {
                Current::Running(r) => Some((c.name.clone(), r.clone())),
                _ => None,
            })
            .collect();
        for (name, r) in running {
            self.watch(&name, r);
        }
    }
}
