//! `metrics.k8s.io/v1beta1` assembled on read, as metrics-server would:
//! every node's latest sample (its `/stats/metrics`) joined with the pods
//! and nodes the store has, filtered by namespace, name and label selector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use futures::future::join_all;
use serde_json::{Value, json};

use super::Api;
use super::codec::json_response;
use super::node_proxy::node_json;
use super::params::Params;
use super::path::ResourcePath;
use crate::error::{ApiError, ApiResult};
use crate::objects::ListOptions;
use crate::resources::metrics::{self, ContainerMetrics, NodeMetrics, PodMetrics};
use peapod_common::wire::NodeUsage;

/// A node that does not answer in this time is left out, as metrics-server does.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);
const HOLLOW_LABEL: &str = "node.peapod.dev/hollow";

pub async fn handle(api: &Arc<Api>, rp: ResourcePath, req: Request) -> ApiResult<Response> {
    let params = Params::parse(req.uri().query());
    if req.method() != Method::GET || rp.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    if rp.watch || params.watch() {
        return Err(ApiError::method_not_allowed(
            "metrics.k8s.io does not support watch",
        ));
    }
    let mut opts = params.list_options()?;
    if let Some(name) = &rp.name {
        // A get is a list narrowed to one name.
        opts.fields = crate::selector::FieldSelector::parse(&format!("metadata.name={name}"))
            .map_err(ApiError::bad_request)?;
    }
    let samples = samples(api).await?;
    let items: Vec<Value> = if rp.rt.plural == "nodes" {
        node_items(api, &samples, &opts)?
    } else {
        pod_items(api, &samples, rp.namespace.as_deref(), &opts).await?
    };
    if let Some(name) = &rp.name {
        return match items.into_iter().next() {
            Some(item) => Ok(json_response(StatusCode::OK, &item)),
            None => Err(ApiError::not_found(rp.rt, name)),
        };
    }
    let list = json!({
        "kind": rp.rt.list_kind,
        "apiVersion": format!("{}/{}", metrics::GROUP, metrics::VERSION),
        "metadata": {},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// (Node object, its latest sample) for every node that answered.
async fn samples(api: &Arc<Api>) -> ApiResult<Vec<(Value, NodeUsage)>> {
    let nodes_rt = api
        .catalog
        .lookup("", "v1", "nodes")
        .expect("nodes are served");
    let nodes = api
        .objects
        .list(nodes_rt, None, &ListOptions::default())
        .await?
        .items;
    // Hollow nodes have no API to ask.
    let real = nodes
        .into_iter()
        .filter(|n| n["metadata"]["labels"].get(HOLLOW_LABEL).is_none());
    let fetches = real.map(|node| async move {
        let fetched =
            tokio::time::timeout(NODE_TIMEOUT, node_json(api, &node, "/stats/metrics")).await;
        let sample: NodeUsage = serde_json::from_value(fetched.ok()?.ok()?).ok()?;
        (!sample.timestamp.is_empty()).then(|| (Value::clone(&node), sample))
    });
    Ok(join_all(fetches).await.into_iter().flatten().collect())
}

fn window(sample: &NodeUsage) -> String {
    format!("{:.3}s", sample.window_seconds)
}

fn timestamp(sample: &NodeUsage) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    serde_json::from_value(json!(sample.timestamp))
        .or_else(|_| serde_json::from_value(json!(crate::objects::now())))
        .expect("the time now is a valid timestamp")
}

fn usage(
    cpu: u64,
    memory: u64,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), metrics::cpu(cpu)),
        ("memory".to_string(), metrics::memory(memory)),
    ])
}

fn meta(object: &Value) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    let m = &object["metadata"];
    serde_json::from_value(json!({
        "name": m["name"],
        "namespace": m["namespace"],
        "labels": m["labels"],
        "creationTimestamp": crate::objects::now(),
    }))
    .unwrap_or_default()
}

fn node_items(
    api: &Arc<Api>,
    samples: &[(Value, NodeUsage)],
    opts: &ListOptions,
) -> ApiResult<Vec<Value>> {
    let nodes_rt = api
        .catalog
        .lookup("", "v1", "nodes")
        .expect("nodes are served");
    let mut items = Vec::new();
    for (node, sample) in samples {
        if !opts.matches(nodes_rt, node) {
            continue;
        }
        let item = NodeMetrics {
            api_version: format!("{}/{}", metrics::GROUP, metrics::VERSION),
            kind: "NodeMetrics".into(),
            metadata: meta(node),
            timestamp: timestamp(sample),
            window: window(sample),
            usage: usage(sample.cpu_nano_cores, sample.memory_bytes),
        };
        items.push(serde_json::to_value(item).map_err(ApiError::internal)?);
    }
    Ok(items)
}

async fn pod_items(
    api: &Arc<Api>,
    samples: &[(Value, NodeUsage)],
    namespace: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Vec<Value>> {
    let pods_rt = api
        .catalog
        .lookup("", "v1", "pods")
        .expect("pods are served");
    let pods = api.objects.list(pods_rt, namespace, opts).await?.items;
    let by_key: BTreeMap<(&str, &str), &Value> = pods
        .iter()
        .map(|p| {
            (
                (
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default(),
                ),
                p.as_ref(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (_, sample) in samples {
        for pod in &sample.pods {
            let Some(object) = by_key.get(&(pod.namespace.as_str(), pod.name.as_str())) else {
                continue;
            };
            let containers = pod
                .containers
                .iter()
                .map(|c| ContainerMetrics {
                    name: c.name.clone(),
                    usage: usage(c.cpu_nano_cores, c.memory_bytes),
                })
                .collect();
            let item = PodMetrics {
                api_version: format!("{}/{}", metrics::GROUP, metrics::VERSION),
                kind: "PodMetrics".into(),
                metadata: meta(object),
                timestamp: timestamp(sample),
                window: window(sample),
                containers,
            };
            items.push(serde_json::to_value(item).map_err(ApiError::internal)?);
        }
    }
    items.sort_by(|a, b| {
        let k = |v: &Value| {
            (
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        k(a).cmp(&k(b))
    });
    Ok(items)
}
