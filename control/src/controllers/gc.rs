//! Garbage collector: keeps a graph of owner references across the kinds
//! that own or are owned, and
//! - deletes dependents whose owners are all gone (background propagation);
//! - for an owner deleted with `foregroundDeletion`, deletes its dependents
//!   first and then releases the owner;
//! - for an owner deleted with `orphan`, removes the owner reference from
//!   its dependents and then releases the owner.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy,
};
use peapod_common::watch::{self, Change, Config};
use serde_json::json;
use tokio::sync::mpsc;

use super::Context;
use crate::objects::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::resources::knative::{KnativeService, Revision};

/// The kinds the collector follows: every kind Peapod's controllers own
/// objects of, and every kind that owns.
fn kinds() -> Vec<ApiResource> {
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery,
    };
    vec![
        ApiResource::erase::<apps::Deployment>(&()),
        ApiResource::erase::<apps::ReplicaSet>(&()),
        ApiResource::erase::<apps::StatefulSet>(&()),
        ApiResource::erase::<apps::DaemonSet>(&()),
        ApiResource::erase::<apps::ControllerRevision>(&()),
        ApiResource::erase::<batch::Job>(&()),
        ApiResource::erase::<batch::CronJob>(&()),
        ApiResource::erase::<core::Pod>(&()),
        ApiResource::erase::<core::Service>(&()),
        ApiResource::erase::<core::Endpoints>(&()),
        ApiResource::erase::<core::ConfigMap>(&()),
        ApiResource::erase::<core::Secret>(&()),
        ApiResource::erase::<core::PersistentVolumeClaim>(&()),
        ApiResource::erase::<discovery::EndpointSlice>(&()),
        ApiResource::erase::<k8s_openapi::api::networking::v1::Ingress>(&()),
        ApiResource::erase::<KnativeService>(&()),
        ApiResource::erase::<Revision>(&()),
    ]
}

#[derive(Clone)]
struct Item {
    resource: usize,
    namespace: Option<String>,
    name: String,
    /// (owner uid, owner `apiVersion/Kind`).
    owners: Vec<(String, String)>,
    finalizers: Vec<String>,
    deleting: bool,
}

struct Graph {
    resources: Vec<ApiResource>,
    items: HashMap<String, Item>,
    /// Owner uid → dependent uids.
    dependents: HashMap<String, HashSet<String>>,
    /// Kinds (`apiVersion/Kind`, since a Knative `Service` is not a core
    /// `Service`) the graph follows; owners of other kinds are assumed to exist.
    followed: HashSet<String>,
    synced: HashSet<usize>,
    dirty: HashSet<String>,
}

impl Graph {
    fn upsert(&mut self, resource: usize, obj: &DynamicObject) {
        let Some(uid) = obj.metadata.uid.clone() else {
            return;
        };
        self.remove(&uid);
        let owners: Vec<(String, String)> = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|r| (r.uid.clone(), format!("{}/{}", r.api_version, r.kind)))
            .collect();
        for (o, _) in &owners {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(uid.clone());
            self.dirty.insert(uid.clone());
        }
        let item = Item {
            resource,
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            owners,
            finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
        };
        if item.deleting {
            self.dirty.insert(uid.clone());
        }
        self.items.insert(uid, item);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(item) = self.items.remove(uid) {
            for (o, _) in &item.owners {
                if let Some(d) = self.dependents.get_mut(o) {
                    d.remove(uid);
                }
            }
        }
        // Its dependents may now be orphans.
        if let Some(deps) = self.dependents.get(uid) {
            self.dirty.extend(deps.iter().cloned());
        }
    }

    fn api(&self, client: &kube::Client, item: &Item) -> Api<DynamicObject> {
        let ar = &self.resources[item.resource];
        match &item.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
            None => Api::all_with(client.clone(), ar),
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Item)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.items.get(d).map(|i| (d.clone(), i.clone())))
            .collect()
    }
}

/// A change to the objects of `kinds()[i]`.
struct Input(usize, Change<DynamicObject>);

pub async fn run(ctx: Arc<Context>) {
    let resources = kinds();
    let (tx, mut rx) = mpsc::channel(4096);
    for (i, ar) in resources.iter().enumerate() {
        let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), ar);
        let mut changes =
            watch::watch_with(api, Config::default(), ar.clone(), "owned objects").changes;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                if tx.send(Input(i, change)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut graph = Graph {
        followed: resources
            .iter()
            .map(|r| format!("{}/{}", r.api_version, r.kind))
            .collect(),
        resources,
        items: HashMap::new(),
        dependents: HashMap::new(),
        synced: HashSet::new(),
        dirty: HashSet::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            input = rx.recv() => {
                let Some(Input(i, change)) = input else { return };
                match change {
                    Change::Applied(o) => graph.upsert(i, &o),
                    Change::Deleted(o) => {
                        if let Some(uid) = o.metadata.uid.as_deref() {
                            graph.remove(uid);
                        }
                    }
                    Change::Synced => {
                        graph.synced.insert(i);
                    }
                }
            }
            _ = tick.tick() => {
                if graph.synced.len() == graph.resources.len() {
                    collect(&ctx.client, &mut graph).await;
                }
            }
        }
    }
}

/// Acts on every object whose owners or own deletion changed.
async fn collect(client: &kube::Client, graph: &mut Graph) {
    let dirty: Vec<String> = graph.dirty.drain().collect();
    for uid in dirty {
        let Some(item) = graph.items.get(&uid).cloned() else {
            continue;
        };
        let result = if item.deleting {
            release(client, graph, &uid, &item).await
        } else {
            collect_orphan(client, graph, &item).await
        };
        if let Err(e) = result {
            tracing::debug!("garbage collector on {}: {e}", item.name);
            graph.dirty.insert(uid);
        }
    }
}

/// Deletes an object whose owners (of followed kinds) are all gone.
async fn collect_orphan(
    client: &kube::Client,
    graph: &Graph,
    item: &Item,
) -> Result<(), kube::Error> {
    if item.owners.is_empty() {
        return Ok(());
    }
    let all_gone = item
        .owners
        .iter()
        .all(|(o, kind)| graph.followed.contains(kind) && !graph.items.contains_key(o));
    if !all_gone {
        return Ok(());
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match graph.api(client, item).delete(&item.name, &dp).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Finishes an orphaning or foreground deletion of an owner.
async fn release(
    client: &kube::Client,
    graph: &mut Graph,
    uid: &str,
    item: &Item,
) -> Result<(), kube::Error> {
    let orphan = item.finalizers.iter().any(|f| f == ORPHAN_FINALIZER);
    let foreground = item.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER);
    if !orphan && !foreground {
        return Ok(());
    }
    let dependents = graph.dependents_of(uid);
    if orphan {
        for (_, dep) in &dependents {
            let api = graph.api(client, dep);
            let Ok(current) = api.get(&dep.name).await else {
                continue;
            };
            let refs: Vec<_> = current
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.uid != uid)
                .collect();
            // An empty list goes away entirely, as Kubernetes omits it.
            let refs = if refs.is_empty() {
                json!(null)
            } else {
                json!(refs)
            };
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": current.metadata.resource_version}});
            api.patch(&dep.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    } else if !dependents.is_empty() {
        for (_, dep) in &dependents {
            if dep.deleting {
                continue;
            }
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                ..Default::default()
            };
            match graph.api(client, dep).delete(&dep.name, &dp).await {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => {
                    other?;
                }
            }
        }
        // Come back when the dependents are gone.
        graph.dirty.insert(uid.to_string());
        return Ok(());
    }
    let api = graph.api(client, item);
    let Ok(current) = api.get(&item.name).await else {
        return Ok(());
    };
    let finalizers: Vec<String> = current
        .metadata
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != ORPHAN_FINALIZER && f != FOREGROUND_FINALIZER)
        .collect();
    let finalizers = if finalizers.is_empty() {
        json!(null)
    } else {
        json!(finalizers)
    };
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.metadata.resource_version}});
    api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
