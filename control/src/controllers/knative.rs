//! Knative Serving on Peapod. A Knative Service's template becomes an
//! immutable Revision (`<name>-00001`, `-00002`, ... on each change), each
//! Revision a Deployment `<revision>-deployment` whose replicas the
//! autoscaler owns. The latest ready Revision takes all the traffic,
//! through a ClusterIP Service named after the Knative Service and an
//! Ingress for `<name>.<namespace>.<domain>`. Objects carry Knative's
//! labels (`serving.knative.dev/service`, `configuration`, `revision`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::Context;
use super::common::{owner_reference, time_now};
use super::runner::{self, Error};
use crate::resources::knative::{KnativeService, Revision, RevisionSpec};
use peapod_common::knative;

pub const SERVICE_LABEL: &str = "serving.knative.dev/service";
pub const CONFIGURATION_LABEL: &str = "serving.knative.dev/configuration";
pub const REVISION_LABEL: &str = "serving.knative.dev/revision";
const GENERATION_LABEL: &str = "serving.knative.dev/configurationGeneration";
/// Annotations the autoscaler reads.
pub const MIN_SCALE: &str = "autoscaling.knative.dev/min-scale";
pub const MAX_SCALE: &str = "autoscaling.knative.dev/max-scale";
pub const INITIAL_SCALE: &str = "autoscaling.knative.dev/initial-scale";
pub use peapod_common::knative::{ACTIVATOR_ANNOTATION, SCALE_TARGET_ANNOTATION};
/// The port user containers listen on unless they say otherwise.
const DEFAULT_PORT: i32 = 8080;

pub async fn run_services(ctx: Arc<Context>) {
    runner::run_owning::<KnativeService, Revision, _, _>(ctx, "knative-service", reconcile_service)
        .await;
}

pub async fn run_revisions(ctx: Arc<Context>) {
    runner::run_owning::<Revision, Deployment, _, _>(ctx, "knative-revision", reconcile_revision)
        .await;
}

fn number(rev: &Revision) -> u64 {
    rev.name_any()
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A Knative condition: True, or False with the reason.
fn condition(ty: &str, ok: bool, reason: Option<&str>, message: Option<&str>) -> Value {
    let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": time_now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

fn is_ready(rev: &Revision) -> bool {
    rev.status
        .as_ref()
        .and_then(|s| s["conditions"].as_array().cloned())
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The port the Revision's (first) container serves on.
pub fn container_port(spec: &RevisionSpec) -> i32 {
    spec.pod
        .containers
        .first()
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.first())
        .map_or(DEFAULT_PORT, |p| p.container_port)
}

/// Whether a template has changed since `rev` was made of it.
fn same_template(
    rev: &Revision,
    template_labels: &BTreeMap<String, String>,
    spec: &RevisionSpec,
) -> bool {
    let labels_match = template_labels
        .iter()
        .all(|(k, v)| rev.labels().get(k) == Some(v));
    labels_match && rev.spec.as_ref() == Some(spec)
}

async fn reconcile_service(svc: Arc<KnativeService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    let revisions: Api<Revision> = Api::namespaced(client.clone(), &ns);
    let mut owned: Vec<Revision> = revisions
        .list(&ListParams::default().labels(&format!("{SERVICE_LABEL}={name}")))
        .await?
        .items;
    owned.sort_by_key(number);
    let template = svc
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| Error::Other(format!("Knative Service {ns}/{name} has no template")))?;
    let meta = template.metadata.clone().unwrap_or_default();
    let spec = template.spec.clone().unwrap_or_default();
    let template_labels = meta.labels.clone().unwrap_or_default();
    let latest = owned.last().cloned();
    let latest = match latest {
        Some(rev) if same_template(&rev, &template_labels, &spec) => rev,
        _ => {
            let next = owned.last().map_or(1, |r| number(r) + 1);
            let rev_name = meta
                .name
                .clone()
                .unwrap_or_else(|| format!("{name}-{next:05}"));
            let mut labels = template_labels.clone();
            labels.insert(SERVICE_LABEL.into(), name.clone());
            labels.insert(CONFIGURATION_LABEL.into(), name.clone());
            labels.insert(
                GENERATION_LABEL.into(),
                svc.metadata.generation.unwrap_or(1).to_string(),
            );
            let rev: Revision = serde_json::from_value(json!({
                "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                "metadata": {
                    "name": rev_name, "namespace": ns, "labels": labels,
                    "annotations": meta.annotations.clone().unwrap_or_default(),
                    "ownerReferences": [owner_reference(svc.as_ref())],
                },
                "spec": spec,
            }))
            .map_err(|e| Error::Other(e.to_string()))?;
            match revisions.create(&PostParams::default(), &rev).await {
                Ok(created) => created,
                Err(kube::Error::Api(e)) if e.code == 409 => revisions.get(&rev.name_any()).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let ready = owned.iter().rev().find(|r| is_ready(r)).cloned();
    let serving = ready.clone().unwrap_or_else(|| latest.clone());
    route(&ctx, &svc, &serving).await?;
    retire(&ctx, &ns, &owned, &[serving.name_any(), latest.name_any()]).await?;
    let domain = &ctx.settings.domain;
    let url = format!("http://{name}.{ns}.{domain}");
    let latest_ready = latest.name_any() == serving.name_any() && ready.is_some();
    let conditions = vec![
        condition(
            "ConfigurationsReady",
            latest_ready,
            (!latest_ready).then_some("RevisionMissing"),
            None,
        ),
        condition(
            "Ready",
            ready.is_some(),
            ready.is_none().then_some("RevisionMissing"),
            None,
        ),
        condition(
            "RoutesReady",
            ready.is_some(),
            ready.is_none().then_some("RevisionMissing"),
            None,
        ),
    ];
    let mut status = json!({
        "observedGeneration": svc.metadata.generation,
        "url": url,
        "address": {"url": format!("http://{name}.{ns}.svc.cluster.local")},
        "latestCreatedRevisionName": latest.name_any(),
        "traffic": [{"revisionName": serving.name_any(), "latestRevision": true, "percent": 100}],
        "conditions": conditions,
    });
    if let Some(r) = &ready {
        status["latestReadyRevisionName"] = json!(r.name_any());
    }
    let same = svc.status.as_ref().is_some_and(|s| {
        s["url"] == status["url"]
            && s["latestCreatedRevisionName"] == status["latestCreatedRevisionName"]
            && s["latestReadyRevisionName"] == status["latestReadyRevisionName"]
            && s["observedGeneration"] == status["observedGeneration"]
            && s["traffic"] == status["traffic"]
    });
    if !same {
        let api: Api<KnativeService> = Api::namespaced(client, &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Revisions that take no traffic (all but the serving and the newest)
/// keep no pods, as Knative's reserve routing state.
async fn retire(
    ctx: &Context,
    ns: &str,
    revisions: &[Revision],
    keep: &[String],
) -> Result<(), Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    for rev in revisions.iter().filter(|r| !keep.contains(&r.name_any())) {
        let name = format!("{}-deployment", rev.name_any());
        let Some(d) = deployments.get_opt(&name).await? else {
            continue;
        };
        if d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
            let patch = json!({"spec": {"replicas": 0}});
            deployments
                .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

/// The public Service and the Ingress send traffic to the Revision that
/// serves; while it has no ready pod, the nodes' activators take it.
async fn route(ctx: &Context, svc: &KnativeService, serving: &Revision) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let port = serving.spec.as_ref().map_or(DEFAULT_PORT, container_port);
    let min_scale = serving
        .annotations()
        .get(MIN_SCALE)
        .and_then(|m| m.parse::<i32>().ok())
        .unwrap_or(0);
    let owner = owner_reference(svc);
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_LABEL.to_string(), name.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        SCALE_TARGET_ANNOTATION.to_string(),
        format!("{}-deployment", serving.name_any()),
    );
    annotations.insert(
        ACTIVATOR_ANNOTATION.to_string(),
        (min_scale == 0).to_string(),
    );
    let public = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
            "ownerReferences": [owner]},
        "spec": {"type": "ClusterIP", "selector": {REVISION_LABEL: serving.name_any()},
            "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]},
    });
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&services, &name, public).await?;
    let host = format!("{name}.{ns}.{}", ctx.settings.domain);
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
        "spec": {"ingressClassName": "peapod", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]},
    });
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&ingresses, &name, ingress).await?;
    Ok(())
}

/// Creates `name` as `body`, or merges `body` into it when it exists.
async fn apply<K>(api: &Api<K>, name: &str, body: Value) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K =
        serde_json::from_value(body.clone()).map_err(|e| Error::Other(e.to_string()))?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let mut patch = body;
            if let Some(m) = patch.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn reconcile_revision(rev: Arc<Revision>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = rev.namespace().unwrap_or_default();
    let name = rev.name_any();
    if rev.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = rev.spec.clone().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let deployment_name = format!("{name}-deployment");
    let existing = deployments.get_opt(&deployment_name).await?;
    let deployment = match existing {
        Some(d) => d,
        None => {
            let initial: i32 = rev
                .annotations()
                .get(INITIAL_SCALE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let min: i32 = rev
                .annotations()
                .get(MIN_SCALE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let d: Deployment =
                serde_json::from_value(deployment_for(&rev, &spec, initial.max(min)))
                    .map_err(|e| Error::Other(format!("the Revision's pod spec: {e}")))?;
            deployments.create(&PostParams::default(), &d).await?
        }
    };
    let status = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let ready_replicas = status.ready_replicas.unwrap_or(0);
    // A Revision that has served stays Ready when scaled to zero.
    let ready = ready_replicas > 0 || is_ready(&rev);
    let new_status = json!({
        "observedGeneration": rev.metadata.generation,
        "serviceName": rev.labels().get(SERVICE_LABEL),
        "actualReplicas": ready_replicas,
        "desiredReplicas": desired,
        "containerStatuses": spec.pod.containers.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>(),
        "conditions": [
            condition("Active", ready_replicas > 0, (ready_replicas == 0).then_some("NoTraffic"), None),
            condition("ContainerHealthy", ready, None, None),
            condition("Ready", ready, None, None),
            condition("ResourcesAvailable", true, None, None),
        ],
    });
    let changed = rev.status.as_ref().is_none_or(|s| {
        s["actualReplicas"] != new_status["actualReplicas"]
            || s["desiredReplicas"] != new_status["desiredReplicas"]
            || is_ready(&rev) != ready
    });
    if changed {
        let api: Api<Revision> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": new_status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The Deployment of a Revision: its pod spec, Knative's labels, and the
/// `PORT` variable the container is told to listen on.
fn deployment_for(rev: &Revision, spec: &RevisionSpec, replicas: i32) -> Value {
    let name = rev.name_any();
    let mut labels = rev.labels().clone();
    labels.insert(REVISION_LABEL.into(), name.clone());
    labels.remove(GENERATION_LABEL);
    let port = container_port(spec);
    let mut pod = serde_json::to_value(&spec.pod).unwrap_or_default();
    // Knative names unnamed containers as its defaulting webhook does.
    let count = pod["containers"].as_array().map_or(0, Vec::len);
    for (i, c) in pod["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if c["name"].as_str().is_none_or(str::is_empty) {
            c["name"] = json!(if count == 1 {
                "user-container".to_string()
            } else {
                format!("user-container-{}", i + 1)
            });
        }
    }
    if let Some(first) = pod["containers"].get_mut(0) {
        if first["ports"].as_array().is_none_or(|p| p.is_empty()) {
            first["ports"] = json!([{"name": "http1", "containerPort": port}]);
        }
        let env = first["env"].as_array().cloned().unwrap_or_default();
        if !env.iter().any(|e| e["name"] == "PORT") {
            let mut env = env;
            env.push(json!({"name": "PORT", "value": port.to_string()}));
            first["env"] = json!(env);
        }
    }
    // The node holds each instance to the revision's serving settings.
    let mut annotations = rev.annotations().clone();
    if let Some(c) = spec.container_concurrency.filter(|c| *c > 0) {
        annotations.insert(knative::CONCURRENCY_ANNOTATION.into(), c.to_string());
    }
    let timeout = spec
        .timeout_seconds
        .filter(|t| *t > 0)
        .map_or(knative::DEFAULT_REQUEST_TIMEOUT_SECONDS, |t| t as u64);
    annotations.insert(
        knative::REQUEST_TIMEOUT_ANNOTATION.into(),
        timeout.to_string(),
    );
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{name}-deployment"), "namespace": rev.namespace(),
            "labels": labels, "ownerReferences": [owner_reference(rev)]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {REVISION_LABEL: name}},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
        },
    })
}
