//! `autoscaling/v1` HorizontalPodAutoscalers, served by converting to and
//! from the stored `autoscaling/v2` form as kube-apiserver does: v1's
//! `targetCPUUtilizationPercentage` is v2's CPU `Utilization` metric, and
//! `currentCPUUtilizationPercentage` its current value. `kubectl autoscale`
//! 1.32 writes v1. Watching v1 and patching it are not served (v2 is).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::auth::User;
use super::codec::{MAX_BODY, decode, json_response};
use super::params::Params;
use super::path::ResourcePath;
use super::{Api, resource};
use crate::error::{ApiError, ApiResult};

pub fn is_v1_hpa(rp: &ResourcePath) -> bool {
    rp.rt.group == "autoscaling" && rp.rt.version == "v1"
}

pub async fn handle(
    api: &Arc<Api>,
    user: &User,
    rp: ResourcePath,
    req: Request,
) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let watch = rp.watch || Params::parse(parts.uri.query()).watch();
    if watch || parts.method == Method::PATCH {
        return Err(ApiError::method_not_allowed(
            "autoscaling/v1 HorizontalPodAutoscalers are served for get, list, create, update and delete; use autoscaling/v2 to watch or patch",
        ));
    }
    let body = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::too_large("the request body is too large"))?
        .to_bytes();
    let body = if matches!(parts.method, Method::POST | Method::PUT) {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let v1 = decode(content_type, &body)?;
        serde_json::to_vec(&to_v2(v1)).map_err(ApiError::internal)?
    } else {
        body.to_vec()
    };
    let v2 = api
        .catalog
        .lookup("autoscaling", "v2", "horizontalpodautoscalers")
        .expect("autoscaling/v2 is served");
    let path = parts
        .uri
        .to_string()
        .replacen("/apis/autoscaling/v1/", "/apis/autoscaling/v2/", 1);
    parts.uri = path.parse().map_err(ApiError::internal)?;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // A Table has the same columns in both versions.
    let table = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    if !table {
        parts
            .headers
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    }
    let inner = Request::from_parts(parts, Body::from(body));
    let rp = ResourcePath { rt: v2, ..rp };
    let resp = resource::handle(api, user, rp, inner).await?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(ApiError::internal)?
        .to_bytes();
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(json_response(status, &json!({})));
    };
    if !status.is_success() || value["kind"] == "Status" {
        return Ok(json_response(status, &value));
    }
    let converted = if table {
        // Rows carry the object in the version asked for.
        let mut table = value;
        for row in table["rows"].as_array_mut().into_iter().flatten() {
            if row["object"]["kind"] == "HorizontalPodAutoscaler" {
                row["object"] = to_v1(row["object"].take());
            }
        }
        table
    } else if value["items"].is_array() {
        let mut list = value;
        list["apiVersion"] = json!("autoscaling/v1");
        list["kind"] = json!("HorizontalPodAutoscalerList");
        if let Some(items) = list["items"].as_array_mut() {
            for item in items {
                *item = to_v1(item.take());
            }
        }
        list
    } else {
        to_v1(value)
    };
    Ok(json_response(
        if status == StatusCode::OK || status == StatusCode::CREATED {
            status
        } else {
            StatusCode::OK
        },
        &converted,
    ))
}

/// Whether a v2 metric is the CPU utilization one v1 can express.
fn cpu_utilization(metric: &Value) -> Option<i64> {
    (metric["type"] == "Resource" && metric["resource"]["name"] == "cpu")
        .then(|| metric["resource"]["target"]["averageUtilization"].as_i64())
        .flatten()
}

fn to_v2(mut v1: Value) -> Value {
    v1["apiVersion"] = json!("autoscaling/v2");
    let spec = &mut v1["spec"];
    if let Some(target) = spec
        .as_object_mut()
        .and_then(|s| s.remove("targetCPUUtilizationPercentage"))
    {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}]);
    }
    if let Some(status) = v1.as_object_mut().and_then(|o| o.remove("status")) {
        let mut v2 = json!({});
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if !status[k].is_null() {
                v2[k] = status[k].clone();
            }
        }
        v1["status"] = v2;
    }
    v1
}

fn to_v1(mut v2: Value) -> Value {
    v2["apiVersion"] = json!("autoscaling/v1");
    v2["kind"] = json!("HorizontalPodAutoscaler");
    let metrics = v2["spec"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(spec) = v2["spec"].as_object_mut() {
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(target) = metrics.iter().find_map(cpu_utilization) {
            spec.insert("targetCPUUtilizationPercentage".into(), json!(target));
        }
    }
    let status = v2["status"].take();
    let mut v1 = json!({
        "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    for k in ["observedGeneration", "lastScaleTime"] {
        if !status[k].is_null() {
            v1[k] = status[k].clone();
        }
    }
    if let Some(current) = status["currentMetrics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
    {
        v1["currentCPUUtilizationPercentage"] = json!(current);
    }
    v2["status"] = v1;
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_target_round_trips() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let v2 = to_v2(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        let mut stored = v2;
        stored["status"] = json!({"currentReplicas": 2, "desiredReplicas": 3,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90}}}]});
        let back = to_v1(stored);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 90);
        assert_eq!(back["apiVersion"], "autoscaling/v1");
    }
}
