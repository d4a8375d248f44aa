//! The scheduler: binds pending pods to nodes. It watches nodes, pods and
//! RuntimeClasses into an in-memory cache, filters and scores nodes for
//! each pod, assumes the pod placed at once (so the next decision sees it)
//! and binds through `pods/binding` concurrently, undoing the assumption
//! when a binding fails.

mod cache;
pub mod filter;
mod score;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use self::cache::{Cache, Placed, Request};
use self::filter::Candidate;
use peapod_common::events::{Kind, Recorder, reference};
use peapod_common::watch::{self, Change, Config};

pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once.
const BIND_CONCURRENCY: usize = 64;
/// How many pods one pass schedules before looking at new events again.
const PASS: usize = 512;
/// Unschedulable pods are retried at least this often.
const RETRY: Duration = Duration::from_secs(5);

/// The uid of a pod's controller, for spreading.
pub fn owner_uid(pod: &Pod) -> Option<String> {
    crate::controllers::common::controller_of(&pod.metadata).map(|r| r.uid.clone())
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

enum Input {
    Node(Change<Node>),
    Pod(Change<Pod>),
    RuntimeClass(Change<RuntimeClass>),
    Bound {
        key: String,
        node: String,
        result: Result<(), kube::Error>,
    },
}

/// Node selector and tolerations a RuntimeClass adds to its pods.
#[derive(Clone, Default)]
struct RuntimeScheduling {
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
}

struct Scheduler {
    client: kube::Client,
    recorder: Recorder,
    cache: Cache,
    runtime_classes: HashMap<String, RuntimeScheduling>,
    /// Unbound pods waiting for a decision, by key.
    pending: HashMap<String, Pod>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// Pods that fit nowhere, and the message last reported for each.
    unschedulable: HashMap<String, String>,
    in_flight: HashSet<String>,
    binds: Arc<Semaphore>,
    tx: mpsc::Sender<Input>,
    rotation: usize,
}

/// Hands the changes of `api`'s objects to the scheduler's loop.
fn forward<K, F>(api: Api<K>, what: &'static str, tx: mpsc::Sender<Input>, wrap: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    F: Fn(Change<K>) -> Input + Send + 'static,
{
    let mut changes = watch::watch(api, Config::default(), what).changes;
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            if tx.send(wrap(change)).await.is_err() {
                return;
            }
        }
    });
}

/// Runs the scheduler until its inputs end.
pub async fn run(client: kube::Client, recorder: Recorder) {
    let (tx, mut rx) = mpsc::channel(8192);
    forward(Api::all(client.clone()), "nodes", tx.clone(), Input::Node);
    forward(Api::all(client.clone()), "pods", tx.clone(), Input::Pod);
    forward(
        Api::all(client.clone()),
        "runtime classes",
        tx.clone(),
        Input::RuntimeClass,
    );
    let mut s = Scheduler {
        client,
        recorder,
        cache: Cache::default(),
        runtime_classes: HashMap::new(),
        pending: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        unschedulable: HashMap::new(),
        in_flight: HashSet::new(),
        binds: Arc::new(Semaphore::new(BIND_CONCURRENCY)),
        tx,
        rotation: 0,
    };
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { return };
                s.handle(input);
                // Take whatever else has arrived before deciding.
                while let Ok(input) = rx.try_recv() {
                    s.handle(input);
                }
            }
            _ = retry.tick() => s.retry_unschedulable(),
            _ = tokio::task::yield_now(), if !s.queue.is_empty() => {}
        }
        s.schedule_pass().await;
    }
}

impl Scheduler {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Node(c) => self.node_change(c),
            Input::Pod(c) => self.pod_change(c),
            Input::RuntimeClass(c) => match c {
                Change::Applied(rc) => {
                    let sched = rc.scheduling.clone().unwrap_or_default();
                    self.runtime_classes.insert(
                        rc.name_any(),
                        RuntimeScheduling {
                            node_selector: sched.node_selector.unwrap_or_default(),
                            tolerations: sched.tolerations.unwrap_or_default(),
                        },
                    );
                }
                Change::Deleted(rc) => {
                    self.runtime_classes.remove(&rc.name_any());
                }
                Change::Synced => {}
            },
            Input::Bound { key, node, result } => {
                self.in_flight.remove(&key);
                match result {
                    Ok(()) => {
                        self.pending.remove(&key);
                    }
                    Err(e) => {
                        if self.cache.placement.get(&key) == Some(&node) {
                            self.cache.unplace(&key);
                        }
                        let gone =
                            matches!(&e, kube::Error::Api(a) if a.code == 404 || a.code == 409);
                        if gone {
                            self.pending.remove(&key);
                        } else {
                            tracing::debug!("binding {key} to {node} failed: {e}");
                            self.enqueue(key);
                        }
                    }
                }
            }
        }
    }

    fn enqueue(&mut self, key: String) {
        if self.pending.contains_key(&key)
            && !self.in_flight.contains(&key)
            && self.queued.insert(key.clone())
        {
            self.queue.push_back(key);
        }
    }

    /// The cluster changed in a way that may let waiting pods fit.
    fn retry_unschedulable(&mut self) {
        let keys: Vec<String> = self.unschedulable.keys().cloned().collect();
        for k in keys {
            self.enqueue(k);
        }
    }

    fn node_change(&mut self, change: Change<Node>) {
        match change {
            Change::Applied(n) => {
                self.cache.set_node(&n);
                self.retry_unschedulable();
            }
            Change::Deleted(n) => self.cache.remove_node(&n.name_any()),
            // Pods waiting may fit the nodes a relist brought.
            Change::Synced => self.retry_unschedulable(),
        }
    }

    fn pod_change(&mut self, change: Change<Pod>) {
        match change {
            Change::Applied(p) => self.pod_changed(Arc::unwrap_or_clone(p)),
            Change::Deleted(p) => {
                self.forget(&key(&p));
                self.retry_unschedulable();
            }
            Change::Synced => {}
        }
    }

    fn forget(&mut self, key: &str) {
        self.cache.unplace(key);
        self.pending.remove(key);
        self.unschedulable.remove(key);
    }

    fn pod_changed(&mut self, pod: Pod) {
        let k = key(&pod);
        let spec = pod.spec.as_ref();
        let node = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        if let Some(node) = node {
            self.pending.remove(&k);
            self.unschedulable.remove(&k);
            if finished {
                // A finished pod no longer holds its node's resources.
                self.cache.unplace(&k);
                self.retry_unschedulable();
            } else {
                self.cache.place(&k, &node, Placed::of(&pod));
            }
            return;
        }
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == SCHEDULER_NAME);
        let gated = spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if !ours || gated || finished || pod.metadata.deletion_timestamp.is_some() {
            self.pending.remove(&k);
            return;
        }
        self.pending.insert(k.clone(), pod);
        if !self.unschedulable.contains_key(&k) {
            self.enqueue(k);
        }
    }

    fn candidate<'a>(&self, pod: &'a Pod) -> Candidate<'a> {
        let spec = pod.spec.as_ref();
        let class = spec.and_then(|s| s.runtime_class_name.as_deref());
        let rc = class
            .and_then(|c| self.runtime_classes.get(c))
            .cloned()
            .unwrap_or_default();
        let mut tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
        tolerations.extend(rc.tolerations);
        let needs_wasm = class == Some("wasm")
            || spec.is_some_and(|s| {
                s.containers
                    .iter()
                    .any(|c| c.image.as_deref().is_some_and(|i| i.ends_with(".wasm")))
            });
        Candidate {
            pod,
            request: Request::of(pod),
            extra_selector: rc.node_selector,
            tolerations,
            needs_wasm,
        }
    }

    async fn schedule_pass(&mut self) {
        for _ in 0..PASS {
            let Some(k) = self.queue.pop_front() else {
                return;
            };
            self.queued.remove(&k);
            if self.in_flight.contains(&k) {
                continue;
            }
            let Some(pod) = self.pending.get(&k).cloned() else {
                continue;
            };
            self.schedule_one(k, pod).await;
        }
    }

    async fn schedule_one(&mut self, k: String, pod: Pod) {
        let started = Instant::now();
        let c = self.candidate(&pod);
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for node in self.cache.nodes.values() {
            match filter::check(&c, node, &self.cache) {
                None => feasible.push(node),
                Some(why) => *reasons.entry(why).or_default() += 1,
            }
        }
        if feasible.is_empty() {
            let message = filter::explain(self.cache.nodes.len(), &reasons);
            let repeated = self.unschedulable.get(&k) == Some(&message);
            self.unschedulable.insert(k, message.clone());
            if !repeated {
                self.report_unschedulable(&pod, message);
            }
            return;
        }
        self.rotation = self.rotation.wrapping_add(1);
        let owner = owner_uid(&pod);
        let best = score::best(&feasible, &c.request, owner.as_deref(), self.rotation);
        let node = feasible[best].name.clone();
        self.cache.place(&k, &node, Placed::of(&pod));
        self.unschedulable.remove(&k);
        self.in_flight.insert(k.clone());
        let permit = self
            .binds
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let (client, tx, recorder) = (self.client.clone(), self.tx.clone(), self.recorder.clone());
        tracing::trace!("{k} -> {node} decided in {:?}", started.elapsed());
        tokio::spawn(async move {
            let result = bind(&client, &pod, &node).await;
            drop(permit);
            if result.is_ok() {
                let msg = format!("Successfully assigned {k} to {node}");
                recorder.publish(&reference(&pod), Kind::Normal, "Scheduled", &msg);
            }
            let _ = tx
                .send(Input::Bound {
                    key: k,
                    node,
                    result,
                })
                .await;
        });
    }

    /// Marks the pod `PodScheduled=False` and records why, as an event.
    fn report_unschedulable(&self, pod: &Pod, message: String) {
        let (client, recorder, pod) = (self.client.clone(), self.recorder.clone(), pod.clone());
        tokio::spawn(async move {
            recorder.publish(
                &reference(&pod),
                Kind::Warning,
                "FailedScheduling",
                &message,
            );
            let api: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
            let patch = json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": crate::objects::now(),
            }]}});
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await;
        });
    }
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name_any(), "namespace": pod.namespace()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &pod.name_any(),
        &PostParams::default(),
        &body,
    )
    .await?;
    peapod_common::telemetry::Telemetry::global()
        .pod_scheduled(peapod_common::telemetry::since(created.as_deref()));
    Ok(())
}
