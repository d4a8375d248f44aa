//! Endpoints and EndpointSlices: for every Service with a selector, the
//! addresses of the pods it selects and the ports its `targetPort`s name
//! on them (numbers, or container port names resolved per pod), ready pods
//! in `addresses`, the others in `notReadyAddresses`. Pods and Services
//! are watched; a change marks the Services it touches (a Service itself,
//! or those selecting a pod before or after its change), and marked
//! Services are recomputed together, paced so that a burst costs few
//! passes. (Marking whole namespaces made a burst of 1,000 new Services
//! rewrite every Service of the namespace on each pass.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Context;
use super::common::{is_pod_ready, owner_reference};
use peapod_common::pace::Pacer;
use peapod_common::watch::{self, Change, Config, Key, key};

/// The least time between two passes; changes meanwhile are gathered.
const BATCH: Duration = Duration::from_millis(5);
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";

enum Followed {
    Service(Change<Service>),
    Pod(Change<Pod>),
}

pub async fn run(ctx: Arc<Context>) {
    let services = watch::watch(
        Api::<Service>::all(ctx.client.clone()),
        Config::default(),
        "services",
    )
    .changes
    .map(Followed::Service);
    let pods = watch::watch(
        Api::<Pod>::all(ctx.client.clone()),
        Config::default(),
        "pods",
    )
    .changes
    .map(Followed::Pod);
    let mut changes = futures::stream::select(services, pods).boxed();
    let mut state = State::default();
    let mut pacer = Pacer::new(BATCH);
    loop {
        let Some(first) = changes.next().await else {
            return;
        };
        state.apply(first);
        pacer.gather(&mut changes, |more| state.apply(more)).await;
        state.reconcile(&ctx).await;
    }
}

/// The objects are the watch stores' (shared, not copied).
#[derive(Default)]
struct State {
    services: BTreeMap<Key, Arc<Service>>,
    pods: BTreeMap<Key, Arc<Pod>>,
    /// Services gone since the last pass (their objects go too).
    removed: BTreeSet<Key>,
    /// Services to recompute in the next pass.
    dirty: BTreeSet<Key>,
}

impl State {
    fn apply(&mut self, change: Followed) {
        match change {
            Followed::Service(c) => self.service(c),
            Followed::Pod(c) => self.pod(c),
        }
    }

    fn service(&mut self, change: Change<Service>) {
        match change {
            Change::Applied(s) => {
                self.removed.remove(&key(&*s));
                self.dirty.insert(key(&*s));
                self.services.insert(key(&*s), s);
            }
            Change::Deleted(s) => {
                self.dirty.remove(&key(&*s));
                self.services.remove(&key(&*s));
                self.removed.insert(key(&*s));
            }
            Change::Synced => {}
        }
    }

    fn pod(&mut self, change: Change<Pod>) {
        match change {
            Change::Applied(p) => {
                let before = self.pods.insert(key(&*p), p.clone());
                self.mark_selecting(&p);
                if let Some(before) = before {
                    self.mark_selecting(&before);
                }
            }
            Change::Deleted(p) => {
                self.pods.remove(&key(&*p));
                self.mark_selecting(&p);
            }
            Change::Synced => {}
        }
    }

    /// Marks the Services of the pod's namespace that select it.
    fn mark_selecting(&mut self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let selecting = self
            .services
            .range((ns.clone(), String::new())..)
            .take_while(|(k, _)| k.0 == ns)
            .filter(|(_, svc)| selector(svc).is_some_and(|sel| selects(sel, pod)))
            .map(|(k, _)| k.clone());
        self.dirty.extend(selecting);
    }

    /// Deletes what removed Services had and rewrites the marked ones; what
    /// fails stays marked for the next pass.
    async fn reconcile(&mut self, ctx: &Context) {
        for k in std::mem::take(&mut self.removed) {
            if let Err(e) = remove(ctx, &k).await {
                tracing::debug!("endpoints of {}/{}: {e}", k.0, k.1);
                self.removed.insert(k);
            }
        }
        for k in std::mem::take(&mut self.dirty) {
            let Some(svc) = self.services.get(&k) else {
                continue;
            };
            let Some(selector) = selector(svc) else {
                continue;
            };
            let selected: Vec<&Pod> = self
                .pods
                .range((k.0.clone(), String::new())..)
                .take_while(|(pk, _)| pk.0 == k.0)
                .map(|(_, p)| &**p)
                .filter(|p| selects(selector, p))
                .collect();
            let groups = group(svc, &selected);
            let written = async {
                write_endpoints(ctx, &k, svc, &groups).await?;
                write_slices(ctx, &k, svc, &groups).await
            }
            .await;
            if let Err(e) = written {
                tracing::debug!("endpoints of {}/{}: {e}", k.0, k.1);
                self.dirty.insert(k);
            }
        }
    }
}

/// The selector of a Service that has endpoints made for it (not an
/// ExternalName one, nor one without a selector).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One pod's part of a Service.
#[derive(Clone, Debug, PartialEq)]
struct Member {
    ip: String,
    /// For pods whose `subdomain` is this Service: their `hostname`, which
    /// DNS serves under the Service's name.
    hostname: Option<String>,
    node: Option<String>,
    pod: String,
    uid: String,
    ready: bool,
    terminating: bool,
}

/// Members grouped by the ports they resolve to (name, port, protocol).
type Groups = BTreeMap<Vec<(String, i32, String)>, Vec<Member>>;

/// The container port a Service port reaches on `pod`.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok()),
    }
}

fn group(svc: &Service, pods: &[&Pod]) -> Groups {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut groups = Groups::new();
    for pod in pods {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if terminating && !publish_not_ready {
            continue;
        }
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    target_port(p, pod)?,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec
            .filter(|s| s.subdomain.as_deref() == svc.metadata.name.as_deref())
            .and_then(|s| s.hostname.clone());
        groups.entry(ports).or_default().push(Member {
            ip,
            hostname,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            pod: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            ready: publish_not_ready || (is_pod_ready(pod) && !terminating),
            terminating,
        });
    }
    for members in groups.values_mut() {
        members.sort_by(|a, b| a.ip.cmp(&b.ip));
    }
    groups
}

fn address(m: &Member, ns: &str) -> Value {
    let mut a = json!({"ip": m.ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": m.pod, "uid": m.uid}});
    if let Some(n) = &m.node {
        a["nodeName"] = json!(n);
    }
    if let Some(h) = &m.hostname {
        a["hostname"] = json!(h);
    }
    a
}

fn subsets(groups: &Groups, ns: &str) -> Value {
    let subsets: Vec<Value> = groups
        .iter()
        .filter(|(ports, members)| !ports.is_empty() && !members.is_empty())
        .map(|(ports, members)| {
            let ready: Vec<Value> = members
                .iter()
                .filter(|m| m.ready)
                .map(|m| address(m, ns))
                .collect();
            let not_ready: Vec<Value> = members
                .iter()
                .filter(|m| !m.ready)
                .map(|m| address(m, ns))
                .collect();
            let ports: Vec<Value> = ports
                .iter()
                .map(|(name, port, protocol)| {
                    let mut p = json!({"port": port, "protocol": protocol});
                    if !name.is_empty() {
                        p["name"] = json!(name);
                    }
                    p
                })
                .collect();
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    json!(subsets)
}

async fn write_endpoints(
    ctx: &Context,
    (ns, name): &Key,
    svc: &Service,
    groups: &Groups,
) -> Result<(), kube::Error> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let subsets = subsets(groups, ns);
    let labels = svc.labels().clone();
    match api.get_opt(name).await? {
        Some(current) => {
            let have = serde_json::to_value(&current.subsets).unwrap_or(Value::Null);
            let same = have == subsets
                || (have.is_null() && subsets.as_array().is_some_and(|a| a.is_empty()));
            if !same {
                let patch = json!({"subsets": subsets});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        None => {
            let eps: Endpoints = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "subsets": subsets,
            }))
            .expect("valid Endpoints");
            match api.create(&PostParams::default(), &eps).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn write_slices(
    ctx: &Context,
    (ns, name): &Key,
    svc: &Service,
    groups: &Groups,
) -> Result<(), kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let uid = svc.uid().unwrap_or_default();
    let suffix: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(5)
        .collect();
    let mut wanted: BTreeMap<String, Value> = BTreeMap::new();
    for (i, (ports, members)) in groups.iter().enumerate() {
        let slice_name = format!(
            "{name}-{suffix}{}",
            if i == 0 {
                String::new()
            } else {
                format!("-{i}")
            }
        );
        let endpoints: Vec<Value> = members
            .iter()
            .map(|m| {
                let mut e = json!({
                    "addresses": [m.ip],
                    "conditions": {"ready": m.ready, "serving": m.ready || m.terminating, "terminating": m.terminating},
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": m.pod, "uid": m.uid},
                });
                if let Some(n) = &m.node {
                    e["nodeName"] = json!(n);
                }
                if let Some(h) = &m.hostname {
                    e["hostname"] = json!(h);
                }
                e
            })
            .collect();
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
            .collect();
        wanted.insert(
            slice_name.clone(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": ns,
                    "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY: MANAGER},
                    "ownerReferences": [owner_reference(svc)]},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }),
        );
    }
    if wanted.is_empty() {
        // A Service with no endpoints still has its (empty) slice.
        let slice_name = format!("{name}-{suffix}");
        wanted.insert(
            slice_name.clone(),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": ns,
                    "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY: MANAGER},
                    "ownerReferences": [owner_reference(svc)]},
                "addressType": "IPv4", "endpoints": [], "ports": [],
            }),
        );
    }
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY}={MANAGER}"
        )))
        .await?
        .items;
    for slice in &existing {
        let slice_name = slice.name_any();
        match wanted.remove(&slice_name) {
            None => {
                api.delete(&slice_name, &DeleteParams::default()).await?;
            }
            Some(want) => {
                let have = serde_json::to_value(slice).unwrap_or_default();
                if have["endpoints"] != want["endpoints"] || have["ports"] != want["ports"] {
                    let patch = json!({"endpoints": want["endpoints"], "ports": want["ports"]});
                    api.patch(&slice_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
            }
        }
    }
    for (_, want) in wanted {
        let slice: EndpointSlice = serde_json::from_value(want).expect("a valid EndpointSlice");
        match api.create(&PostParams::default(), &slice).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A deleted Service's Endpoints go with it (its slices are owned by it).
async fn remove(ctx: &Context, (ns, name): &Key) -> Result<(), kube::Error> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn service(name: &str, app: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_change_marks_only_the_services_selecting_it_before_or_after() {
        let mut state = State::default();
        for (name, app) in [("web", "web"), ("db", "db")] {
            state.service(Change::Applied(Arc::new(service(name, app))));
        }
        let other_ns: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "other"},
            "spec": {"selector": {"app": "web"}},
        }))
        .unwrap();
        state.service(Change::Applied(Arc::new(other_ns)));
        state.dirty.clear();
        let web = pod("a", "10.0.0.1", true, "http", 80);
        state.pod(Change::Applied(Arc::new(web.clone())));
        let marked: Vec<_> = std::mem::take(&mut state.dirty).into_iter().collect();
        assert_eq!(marked, [("ns".to_string(), "web".to_string())]);

        let mut db = web;
        db.labels_mut().insert("app".into(), "db".into());
        state.pod(Change::Applied(Arc::new(db.clone())));
        assert_eq!(state.dirty.len(), 2, "{:?}", state.dirty);
        state.dirty.clear();
        state.pod(Change::Deleted(Arc::new(db)));
        let marked: Vec<_> = state.dirty.iter().map(|k| k.1.as_str()).collect();
        assert_eq!(marked, ["db"]);
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_readiness_splits_addresses() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": 9000, "targetPort": 9090, "protocol": "TCP"}]},
        }))
        .unwrap();
        let a = pod("a", "10.0.0.1", true, "http", 8080);
        let b = pod("b", "10.0.0.2", false, "http", 8080);
        let c = pod("c", "10.0.0.3", true, "http", 8081);
        let groups = group(&svc, &[&a, &b, &c]);
        assert_eq!(groups.len(), 2);
        let s = subsets(&groups, "ns");
        let first = &s[0];
        assert_eq!(first["ports"][0]["port"], 8080);
        assert_eq!(first["ports"][1]["port"], 9090);
        assert_eq!(first["addresses"][0]["ip"], "10.0.0.1");
        assert_eq!(first["notReadyAddresses"][0]["ip"], "10.0.0.2");
        assert_eq!(s[1]["addresses"][0]["ip"], "10.0.0.3");
    }
}
