//! The HorizontalPodAutoscaler controller (`autoscaling/v2`): every sync
//! period it reads each HPA's target through its `scale` subresource
//! (Deployments, ReplicaSets, StatefulSets), measures the target's pods —
//! CPU and memory from `metrics.k8s.io` against the pods' requests, and
//! the Pods metric `requests-per-second` from the nodes' counters of Wasm
//! HTTP functions — and sets the replicas the metrics ask for, within the
//! HPA's range, its stabilization windows and its scaling policies.

mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use self::replicas::{History, proposal};
use super::Context;
use super::common::time_now;
use super::node_stats::{from_nodes, get_json};
use peapod_common::quantity;
use peapod_common::wire::NodeUsage;

const SYNC: Duration = Duration::from_secs(10);
/// The metric without an explicit `metrics` list: 80 % CPU, as Kubernetes.
const DEFAULT_CPU_UTILIZATION: i32 = 80;
/// The Pods metric served from the nodes' request counters.
const RPS_METRICS: &[&str] = &[
    "requests-per-second",
    "requests_per_second",
    "http_requests_per_second",
];

pub async fn run(ctx: Arc<Context>) {
    let mut histories: HashMap<String, History> = HashMap::new();
    let mut tick = tokio::time::interval(SYNC);
    loop {
        tick.tick().await;
        let api: Api<HorizontalPodAutoscaler> = Api::all(ctx.client.clone());
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        let mut seen = Vec::new();
        for hpa in list.items {
            let uid = hpa.uid().unwrap_or_default();
            seen.push(uid.clone());
            let history = histories.entry(uid).or_default();
            if let Err(e) = sync(&ctx, &hpa, history).await {
                tracing::debug!(
                    "hpa {}/{}: {e}",
                    hpa.namespace().unwrap_or_default(),
                    hpa.name_any()
                );
            }
        }
        histories.retain(|uid, _| seen.contains(uid));
    }
}

/// What one metric measured, and the replicas it proposes.
struct Measured {
    status: Value,
    proposal: i32,
    reason: String,
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": time_now()})
}

async fn sync(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    history: &mut History,
) -> Result<(), kube::Error> {
    let ns = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    let plural = match (
        target.api_version.as_deref().unwrap_or("apps/v1"),
        target.kind.as_str(),
    ) {
        ("apps/v1", "Deployment") => "deployments",
        ("apps/v1", "ReplicaSet") => "replicasets",
        ("apps/v1", "StatefulSet") => "statefulsets",
        _ => {
            let message = format!(
                "the HPA controller cannot scale a {} ({})",
                target.kind,
                target.api_version.as_deref().unwrap_or("")
            );
            let status = json!({"currentReplicas": 0, "desiredReplicas": 0,
                "conditions": [condition("AbleToScale", false, "FailedGetScale", &message)]});
            return write_status(&api, &name, status).await;
        }
    };
    let scale_path = format!(
        "/apis/apps/v1/namespaces/{ns}/{plural}/{}/scale",
        target.name
    );
    let scale: Value = match get_json(&ctx.client, &scale_path).await {
        Ok(s) => s,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            let status = json!({"conditions": [condition("AbleToScale", false, "FailedGetScale", &message)]});
            return write_status(&api, &name, status).await;
        }
    };
    let current = scale["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
    let selector = scale["status"]["selector"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut conditions = vec![condition(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    )];
    if current == 0 && min > 0 {
        conditions.push(condition(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
        let status = json!({"currentReplicas": 0, "desiredReplicas": 0, "conditions": conditions, "currentMetrics": null});
        return write_status(&api, &name, status).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .collect();
    let metrics = spec.metrics.clone().unwrap_or_else(|| {
        serde_json::from_value(json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]))
        .expect("a valid metric")
    });
    let mut measured = Vec::new();
    let mut failures = Vec::new();
    for metric in &metrics {
        match measure(ctx, &ns, &selector, &pods, current, metric).await {
            Ok(m) => measured.push(m),
            Err(e) => failures.push(e),
        }
    }
    let Some(best) = measured.iter().max_by_key(|m| m.proposal) else {
        let message = failures.join("; ");
        conditions.push(condition(
            "ScalingActive",
            false,
            "FailedGetResourceMetric",
            &message,
        ));
        let status = json!({"currentReplicas": current, "desiredReplicas": current, "conditions": conditions});
        return write_status(&api, &name, status).await;
    };
    conditions.push(condition(
        "ScalingActive",
        true,
        "ValidMetricFound",
        &format!(
            "the HPA was able to successfully calculate a replica count from {}",
            best.reason
        ),
    ));
    let (desired, limited) = history.decide(
        Instant::now(),
        current,
        best.proposal,
        min,
        max,
        spec.behavior.as_ref(),
    );
    conditions.push(if limited {
        condition(
            "ScalingLimited",
            true,
            "ScaleLimited",
            "the desired replica count is limited by the range or a scaling policy",
        )
    } else {
        condition(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    });
    let mut status = json!({
        "observedGeneration": hpa.metadata.generation,
        "currentReplicas": current,
        "desiredReplicas": desired,
        "currentMetrics": measured.iter().map(|m| m.status.clone()).collect::<Vec<_>>(),
        "conditions": conditions,
    });
    if desired != current {
        let patch = json!({"spec": {"replicas": desired}});
        let request = http::Request::patch(&scale_path)
            .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(serde_json::to_vec(&patch).unwrap_or_default())
            .expect("a valid request");
        ctx.client.request::<Value>(request).await?;
        status["lastScaleTime"] = json!(time_now());
        let direction = if desired > current { "above" } else { "below" };
        ctx.recorder.publish(
            &hpa_reference(hpa),
            peapod_common::events::Kind::Normal,
            "SuccessfulRescale",
            &format!(
                "New size: {desired}; reason: {} {direction} target",
                best.reason
            ),
        );
        tracing::info!(
            "hpa {ns}/{name}: {} from {current} to {desired} replicas",
            target.name
        );
    } else if let Some(last) = hpa.status.as_ref().and_then(|s| s.last_scale_time.clone()) {
        status["lastScaleTime"] = json!(last);
    }
    write_status(&api, &name, status).await
}

async fn write_status(
    api: &Api<HorizontalPodAutoscaler>,
    name: &str,
    status: Value,
) -> Result<(), kube::Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    Ok(())
}

fn hpa_reference(hpa: &HorizontalPodAutoscaler) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("autoscaling/v2".into()),
        kind: Some("HorizontalPodAutoscaler".into()),
        name: hpa.metadata.name.clone(),
        namespace: hpa.metadata.namespace.clone(),
        uid: hpa.metadata.uid.clone(),
        resource_version: hpa.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// One metric of the HPA against the target's pods.
async fn measure(
    ctx: &Context,
    ns: &str,
    selector: &str,
    pods: &[Pod],
    current: i32,
    metric: &MetricSpec,
) -> Result<Measured, String> {
    match metric.type_.as_str() {
        "Resource" => {
            let r = metric
                .resource
                .as_ref()
                .ok_or("a Resource metric needs `resource`")?;
            resource_metric(ctx, ns, selector, pods, current, &r.name, &r.target).await
        }
        "Pods" => {
            let p = metric.pods.as_ref().ok_or("a Pods metric needs `pods`")?;
            let name = p.metric.name.as_str();
            if !RPS_METRICS.contains(&name) {
                return Err(format!(
                    "the Pods metric {name} is not served (Peapod serves {})",
                    RPS_METRICS[0]
                ));
            }
            let target = p
                .target
                .average_value
                .as_ref()
                .and_then(|q| quantity::parse(&q.0))
                .ok_or("a Pods metric needs target.averageValue")?;
            let rates = requests_per_second(ctx).await;
            let measured: Vec<f64> = pods
                .iter()
                .filter_map(|p| rates.get(&(ns.to_string(), p.name_any())).copied())
                .collect();
            if measured.is_empty() {
                return Err(format!("no pod reported {name} yet"));
            }
            let average = measured.iter().sum::<f64>() / measured.len() as f64;
            Ok(Measured {
                status: json!({"type": "Pods", "pods": {"metric": {"name": name},
                    "current": {"averageValue": format!("{}m", (average * 1000.0).round() as i64)}}}),
                proposal: proposal(current, measured.len() as i32, average / target.max(1e-9)),
                reason: format!("pods metric {name}"),
            })
        }
        other => Err(format!(
            "{other} metrics are not served by Peapod (Resource and Pods are)"
        )),
    }
}

async fn resource_metric(
    ctx: &Context,
    ns: &str,
    selector: &str,
    pods: &[Pod],
    current: i32,
    resource: &str,
    target: &k8s_openapi::api::autoscaling::v2::MetricTarget,
) -> Result<Measured, String> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
        form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
    );
    let list: Value = get_json(&ctx.client, &path)
        .await
        .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))?;
    let usage: BTreeMap<String, f64> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let sum = item["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| quantity::parse(c["usage"][resource].as_str()?))
                .sum::<f64>();
            (
                item["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                sum,
            )
        })
        .collect();
    let mut used = 0.0;
    let mut requested = 0.0;
    let mut counted = 0;
    for pod in pods {
        let Some(u) = usage.get(&pod.name_any()) else {
            continue;
        };
        let request: Option<f64> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| {
                c.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get(resource))
                    .and_then(|q| quantity::parse(&q.0))
            })
            .sum();
        used += u;
        requested += request.unwrap_or(0.0);
        counted += 1;
        if request.is_none() && target.type_ == "Utilization" {
            return Err(format!(
                "missing request for {resource} in pod {}",
                pod.name_any()
            ));
        }
    }
    if counted == 0 {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let average = used / f64::from(counted);
    let (ratio, current_status) = match target.type_.as_str() {
        "Utilization" => {
            let want = f64::from(
                target
                    .average_utilization
                    .ok_or("a Utilization target needs averageUtilization")?,
            );
            let utilization = if requested > 0.0 {
                100.0 * used / requested
            } else {
                0.0
            };
            (
                utilization / want.max(1.0),
                json!({"averageUtilization": utilization.round() as i64, "averageValue": quantity_string(resource, average)}),
            )
        }
        _ => {
            let want = target
                .average_value
                .as_ref()
                .and_then(|q| quantity::parse(&q.0))
                .ok_or("an AverageValue target needs averageValue")?;
            (
                average / want.max(1e-9),
                json!({"averageValue": quantity_string(resource, average)}),
            )
        }
    };
    Ok(Measured {
        status: json!({"type": "Resource", "resource": {"name": resource, "current": current_status}}),
        proposal: proposal(current, counted, ratio),
        reason: format!("{resource} resource utilization (percentage of request)"),
    })
}

fn quantity_string(resource: &str, value: f64) -> String {
    if resource == "cpu" {
        format!("{}m", (value * 1000.0).round() as i64)
    } else {
        format!("{}", value.round() as i64)
    }
}

/// Requests per second of each Wasm HTTP pod, from every real node.
async fn requests_per_second(ctx: &Context) -> HashMap<(String, String), f64> {
    let samples: Vec<NodeUsage> = from_nodes(&ctx.client, "/stats/metrics")
        .await
        .unwrap_or_default();
    samples
        .into_iter()
        .flat_map(|s| s.pods)
        .filter_map(|pod| Some(((pod.namespace, pod.name), pod.requests_per_second?)))
        .collect()
}
