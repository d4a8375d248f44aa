//! The pod worker: one task per pod bound to this node, reconciling what
//! runs with what the pod asks for. It makes the sandbox and volumes, runs
//! init containers in order and then the app containers, restarts them as
//! the restart policy and back-off allow, acts on probes, reports status,
//! and on deletion stops everything gracefully and removes every trace.

mod adopt;
mod end;
mod evict;
mod prepare;
mod report;
mod runs;

pub use end::remove_pod;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use peapod_runtimes::image::Credentials;
use peapod_runtimes::oci::Exit;
use serde_json::Value;
use tokio::sync::mpsc;

use super::NodeCtx;
use super::container::ContainerState;
use super::env::{Addresses, Sources};
use super::plan::{self, Action, Phase, PodView, Slot};
use super::probes::Outcome;
use super::runtime::{ContainerRuntime, OciRuntime, PodNetwork, WasmPod};
use super::sandbox::{self, PodDir};
use super::volumes::Prepared;
use crate::network::Sandbox;

/// What a pod worker hears about.
#[derive(Debug)]
pub enum Msg {
    /// The pod object changed.
    Pod(Box<Pod>),
    /// The pod object is gone from the API.
    Deleted,
    /// A container run ended.
    Exited {
        container: String,
        run: String,
        exit: Exit,
    },
    Probe(Outcome),
}

/// How soon a pod stuck on its sandbox or volumes is retried.
const RETRY: Duration = Duration::from_secs(2);

pub struct Worker {
    node: Arc<NodeCtx>,
    pod: Pod,
    uid: String,
    dir: PodDir,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    sandbox: Option<Sandbox>,
    volumes: Option<Prepared>,
    sources: Sources,
    credentials: Vec<Credentials>,
    init: Vec<ContainerState>,
    app: Vec<ContainerState>,
    init_done: bool,
    /// Why the pod cannot get going yet (reason, message).
    blocked: Option<(String, String)>,
    retry_at: Option<Instant>,
    /// When the volumes that follow API objects and pod fields are next
    /// brought up to date (none if the pod has no such volume).
    refresh_at: Option<Instant>,
    /// When the pod's local storage is next measured (pods with storage
    /// limits only).
    storage_check_at: Option<Instant>,
    /// Why the node evicted the pod, once it did.
    evicted: Option<String>,
    start_time: String,
    reported: Option<Value>,
    /// The pod reached Succeeded or Failed: nothing runs any more.
    finished: Option<Phase>,
    run_started: HashMap<String, Instant>,
    events: mpsc::UnboundedReceiver<(peapod_common::events::Kind, String, String)>,
    events_tx: mpsc::UnboundedSender<(peapod_common::events::Kind, String, String)>,
    oci: OciRuntime,
    /// Where the pod's Wasm containers run.
    wasm: WasmPod,
}

fn spec_of(pod: &Pod) -> k8s_openapi::api::core::v1::PodSpec {
    pod.spec.clone().unwrap_or_default()
}

impl Worker {
    pub fn new(node: Arc<NodeCtx>, pod: Pod) -> (Worker, mpsc::UnboundedSender<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let uid = pod.uid().unwrap_or_default();
        let spec = spec_of(&pod);
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerState::new(&c.name))
            .collect();
        let app = spec
            .containers
            .iter()
            .map(|c| ContainerState::new(&c.name))
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(now);
        let worker = Worker {
            dir: PodDir::new(&node.config, &uid),
            oci: OciRuntime(node.clone()),
            wasm: WasmPod::new(node.clone(), pod.name_any(), tx.clone()),
            node,
            pod,
            uid,
            tx: tx.clone(),
            rx,
            sandbox: None,
            volumes: None,
            sources: Sources::default(),
            credentials: Vec::new(),
            init,
            app,
            init_done: false,
            blocked: None,
            retry_at: None,
            refresh_at: None,
            storage_check_at: None,
            evicted: None,
            start_time,
            reported: None,
            finished: None,
            run_started: HashMap::new(),
            events,
            events_tx,
        };
        (worker, tx)
    }

    pub async fn run(mut self) {
        self.adopt();
        loop {
            // A failed step's pause (sandbox, status report) is over.
            if self.retry_at.is_some_and(|t| Instant::now() >= t) {
                self.retry_at = None;
            }
            if let Some(t) = plan::termination(&self.pod, false) {
                self.terminate(t).await;
                return;
            }
            if self.finished.is_none() {
                // Visible to logs and exec before a long pull or compile.
                self.publish();
                self.sync().await;
                self.check_storage().await;
            }
            self.report().await;
            self.publish();
            let now = Instant::now();
            let wake = plan::wake(&self.view(), now);
            let wake = self.storage_wait(now).map_or(wake, |w| w.min(wake));
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    None => { self.detach(); return; }
                    Some(Msg::Deleted) => { self.gone().await; return; }
                    Some(m) => self.handle(m).await,
                },
                Some((kind, reason, message)) = self.events.recv() => {
                    self.node.event_kind(&self.pod, kind, &reason, &message);
                }
                _ = tokio::time::sleep(wake) => {}
            }
            // Take whatever else arrived before reconciling again.
            while let Ok(m) = self.rx.try_recv() {
                match m {
                    Msg::Deleted => {
                        self.gone().await;
                        return;
                    }
                    m => self.handle(m).await,
                }
            }
        }
    }

    /// What the plan decides from.
    fn view(&self) -> PodView<'_> {
        PodView {
            restart_policy: plan::restart_policy(&self.pod),
            finished: self.finished.is_some(),
            retry_at: self.retry_at,
            prepared: self.sandbox.is_some() && self.volumes.is_some(),
            refresh_at: self.volumes.as_ref().and(self.refresh_at),
            init_done: self.init_done,
            init: self.init.iter().map(ContainerState::seen).collect(),
            app: self.app.iter().map(ContainerState::seen).collect(),
        }
    }

    fn container_spec(&self, name: &str) -> Option<Container> {
        let spec = spec_of(&self.pod);
        spec.init_containers
            .into_iter()
            .flatten()
            .chain(spec.containers)
            .find(|c| c.name == name)
    }

    fn slot_spec(&self, slot: Slot) -> Option<Container> {
        let spec = spec_of(&self.pod);
        match slot {
            Slot::Init(i) => spec.init_containers.unwrap_or_default().into_iter().nth(i),
            Slot::App(i) => spec.containers.into_iter().nth(i),
        }
    }

    fn slot(&mut self, slot: Slot) -> &mut ContainerState {
        slot_in(&mut self.init, &mut self.app, slot)
    }

    fn state_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.init
            .iter_mut()
            .chain(self.app.iter_mut())
            .find(|c| c.name == name)
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Pod(p) => {
                if p.uid().as_deref() == Some(self.uid.as_str()) {
                    // Labels and annotations show in downward API volumes.
                    let fields_changed = p.labels() != self.pod.labels()
                        || p.annotations() != self.pod.annotations();
                    if fields_changed && self.refresh_at.is_some() {
                        self.refresh_at = Some(Instant::now());
                    }
                    self.pod = *p;
                }
            }
            Msg::Exited {
                container,
                run,
                exit,
            } => self.exited(&container, &run, exit).await,
            Msg::Probe(o) => self.probed(o).await,
            Msg::Deleted => {}
        }
    }

    fn runtime(&self, wasm: bool) -> &dyn ContainerRuntime {
        if wasm { &self.wasm } else { &self.oci }
    }

    fn network(&self) -> &dyn PodNetwork {
        &self.node.network
    }

    /// The node's address for a `hostNetwork` pod.
    fn host_network(&self) -> Option<std::net::Ipv4Addr> {
        sandbox::host_network(&self.pod).then_some(self.node.config.node_ip)
    }

    fn ns(&self) -> String {
        self.pod.namespace().unwrap_or_default()
    }

    fn addresses(&self) -> Addresses {
        Addresses {
            pod_ip: self
                .sandbox
                .as_ref()
                .map(|s| s.ip.to_string())
                .unwrap_or_default(),
            host_ip: self.node.config.node_ip.to_string(),
            node_name: self.node.config.name.clone(),
        }
    }

    /// Carries out what the plan says now.
    async fn sync(&mut self) {
        let mut actions = plan::next(&self.view(), Instant::now());
        if actions.contains(&Action::PrepareSandbox) {
            if !self.prepare().await {
                return;
            }
            actions = plan::next(&self.view(), Instant::now());
        }
        for action in actions {
            self.execute(action).await;
        }
    }

    async fn execute(&mut self, action: Action) {
        match action {
            // Done before the rest of the plan (see sync).
            Action::PrepareSandbox => {}
            Action::RefreshVolumes => self.refresh_volumes().await,
            Action::InitDone => self.init_done = true,
            Action::Start { slot, restart } => {
                if restart {
                    self.slot(slot).restart_count += 1;
                }
                self.launch(slot).await;
            }
            Action::Restart(slot) => {
                let state = self.slot(slot);
                state.last_terminated = state.terminated().cloned();
                state.restart_count += 1;
                self.launch(slot).await;
            }
            Action::CrashLoopBackOff { slot, wait } => {
                let pod_ref = format!("{}_{}({})", self.pod.name_any(), self.ns(), self.uid);
                let name = self.slot(slot).name.clone();
                let message = format!(
                    "back-off {}s restarting failed container={name} pod={pod_ref}",
                    wait.as_secs().max(1),
                );
                let state = self.slot(slot);
                state.last_terminated = state.terminated().cloned();
                state.set_waiting("CrashLoopBackOff", Some(message));
                self.node.event(
                    &self.pod,
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container",
                );
            }
            Action::ImagePullBackOff(slot) => {
                let image = self
                    .slot_spec(slot)
                    .and_then(|c| c.image)
                    .unwrap_or_default();
                let message = format!("Back-off pulling image \"{image}\"");
                self.slot(slot)
                    .set_waiting("ImagePullBackOff", Some(message.clone()));
                self.node.event(&self.pod, "Normal", "BackOff", &message);
            }
            Action::Finish(phase) => self.finish(phase).await,
        }
    }
}

/// The state of the container in `slot` (borrowing only the two lists).
fn slot_in<'a>(
    init: &'a mut [ContainerState],
    app: &'a mut [ContainerState],
    slot: Slot,
) -> &'a mut ContainerState {
    match slot {
        Slot::Init(i) => &mut init[i],
        Slot::App(i) => &mut app[i],
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
