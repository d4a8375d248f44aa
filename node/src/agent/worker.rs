//! The pod worker: one task per pod bound to this node, reconciling what
//! runs with what the pod asks for. It makes the sandbox and volumes, runs
//! init containers in order and then the app containers, restarts them as
//! the restart policy and back-off allow, acts on probes, reports status,
//! and on deletion stops everything gracefully and removes every trace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use peapod_runtimes::image::Credentials;
use peapod_runtimes::oci::{Exit, PodNamespaces};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::NodeCtx;
use super::container::{ContainerState, Current, Terminated};
use super::env::{Addresses, Sources};
use super::launch::{self, LaunchError, PodContext};
use super::plan::{self, Action, Phase, PodView, Probed, Slot};
use super::probes::{self, Outcome};
use super::run::Run;
use super::runtime::{ContainerRuntime, OciRuntime, PodNetwork, WasmPod};
use super::sandbox::{self, PodDir};
use super::status::{self, PodFacts};
use super::volumes::{self, ClaimPaths, Prepared};
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
            }
            self.report().await;
            self.publish();
            let wake = plan::wake(&self.view(), Instant::now());
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

    /// The pod object went from the API (a forced delete): stop at once.
    async fn gone(&mut self) {
        if let Some(t) = plan::termination(&self.pod, true) {
            self.terminate(t).await;
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

    /// Picks up what a previous agent left running for this pod.
    fn adopt(&mut self) {
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
                    container_id: Some(super::container::container_id(&record.id)),
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

    /// Creates the sandbox and volumes if they are not there yet.
    async fn ensure_sandbox(&mut self) -> Result<(), (String, String)> {
        let (maps, secrets) = super::env::references(&self.pod);
        self.sources = self.node.fetch_sources(&self.ns(), &maps, &secrets).await;
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
    async fn refresh_volumes(&mut self) {
        self.refresh_at = Some(Instant::now() + self.node.config.sync_frequency);
        let (maps, secrets) = super::env::references(&self.pod);
        let fresh = self.node.fetch_sources(&self.ns(), &maps, &secrets).await;
        // What could not be read (gone, or the API unreachable) keeps the
        // data it had: volumes keep their files, as on Kubernetes.
        for (name, data) in fresh.config_maps.into_iter().filter(|(_, d)| d.is_some()) {
            self.sources.config_maps.insert(name, data);
        }
        for (name, data) in fresh.secrets.into_iter().filter(|(_, d)| d.is_some()) {
            self.sources.secrets.insert(name, data);
        }
        if let Err(e) = volumes::refresh(&self.pod, &self.dir, &self.sources, &self.addresses()) {
            tracing::debug!(
                "pod {}/{}: refreshing volumes: {e}",
                self.ns(),
                self.pod.name_any()
            );
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

    /// Makes the sandbox and volumes; on failure the pod shows why and
    /// the step is retried after a pause.
    async fn prepare(&mut self) -> bool {
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

    async fn launch(&mut self, slot: Slot) {
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

    async fn launch_failed(&mut self, slot: Slot, e: LaunchError) {
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
    fn watch(&mut self, name: &str, run: Run) {
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

    async fn exited(&mut self, name: &str, run: &str, exit: Exit) {
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

    async fn probed(&mut self, o: Outcome) {
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

    /// The pod ended for good: its network goes, its files stay for logs.
    async fn finish(&mut self, phase: Phase) {
        self.finished = Some(phase);
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
            c.ready = false;
        }
        self.wasm.shut_down();
        self.network().remove(&self.uid).await;
    }

    async fn report(&mut self) {
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

    fn pod_was_terminal(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| matches!(p, "Succeeded" | "Failed"))
    }

    /// Makes what runs visible to the node's API (logs, exec).
    fn publish(&self) {
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
                    super::PodRun {
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
            super::PodEntry {
                uid: self.uid.clone(),
                dir: self.dir.clone(),
                runs,
                pod_ip: self.sandbox.as_ref().map(|s| s.ip),
            },
        );
    }

    /// Stops the pod's containers (gracefully when the pod was deleted with
    /// a grace period), removes everything of it, and lets the API drop it.
    async fn terminate(&mut self, how: plan::Termination) {
        let plan::Termination { grace, graceful } = how;
        let deadline = Instant::now() + grace;
        let running: Vec<(String, Run)> = self
            .init
            .iter()
            .chain(&self.app)
            .filter_map(|c| match &c.current {
                Current::Running(r) => Some((c.name.clone(), r.clone())),
                _ => None,
            })
            .collect();
        for (name, r) in &running {
            self.node.event(
                &self.pod,
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
            );
            if graceful && let Some(spec) = self.container_spec(name) {
                super::hooks::pre_stop(
                    &self.node,
                    &spec,
                    r,
                    self.sandbox.as_ref().map(|s| s.ip),
                    deadline,
                )
                .await;
            }
        }
        for (_, r) in &running {
            self.runtime(r.is_wasm()).stop(r.clone(), grace);
        }
        // Wait for the runs to end (the stop escalates to SIGKILL itself).
        let mut left: Vec<String> = running.iter().map(|(_, r)| r.id().to_string()).collect();
        let hard_deadline = deadline + Duration::from_secs(10);
        while !left.is_empty() && Instant::now() < hard_deadline {
            let wait = hard_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Some(Msg::Exited { run, .. })) => left.retain(|r| r != &run),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
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

    /// Removes every trace of the pod from the node.
    async fn cleanup(&mut self) {
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
        }
        self.wasm.shut_down();
        remove_pod(&self.node, &self.uid).await;
    }

    /// The agent stops: containers keep running, tasks end.
    fn detach(&mut self) {
        for c in self.init.iter_mut().chain(self.app.iter_mut()) {
            c.stop_tasks();
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

/// Removes a pod's runs, mounts, network, cgroups and files.
pub async fn remove_pod(node: &NodeCtx, uid: &str) {
    let dir = PodDir::new(&node.config, uid);
    let prefix = super::container::run_id(uid, "", 0);
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

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
