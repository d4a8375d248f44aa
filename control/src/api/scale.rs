//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets, as
//! an `autoscaling/v1` Scale (what `kubectl scale` and autoscalers speak).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::codec::{self, json_response};
use super::resource::{Call, check_patched_revision, patch_body, patch_error};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::patch::{self, Schema};

const SCALE_SCHEMA: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The Scale view of a scalable object.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": crate::selector::LabelSelector::from_k8s(object["spec"].get("selector"))
                .map(|s| s.to_string())
                .unwrap_or_default(),
        },
    })
}

pub async fn get(call: &Call<'_>) -> ApiResult<Response> {
    let object = call.api.objects.get(call.target()).await?;
    Ok(json_response(StatusCode::OK, &scale_of(&object)))
}

/// Writes the desired Scale's replicas into the parent's spec.
async fn apply_scale(
    call: &Call<'_>,
    desired: impl Fn(&Value) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let name = call.name.clone().unwrap_or_default();
    let updated = call
        .api
        .objects
        .update_with(call.target(), None, Default::default(), |current| {
            let scale = desired(&scale_of(current))?;
            check_patched_revision(call, current, &scale)?;
            let replicas = match scale["spec"]["replicas"].as_i64() {
                Some(r) if r >= 0 => r,
                other => {
                    let value = other.map_or(Value::Null, Value::from);
                    return Err(ApiError::invalid_kind(
                        "autoscaling",
                        "Scale",
                        &name,
                        &[FieldError::invalid(
                            "spec.replicas",
                            &value,
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
            };
            let mut object = current.clone();
            object["spec"]["replicas"] = json!(replicas);
            Ok(object)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated)))
}

pub async fn update(call: &Call<'_>) -> ApiResult<Response> {
    let body = codec::decode(
        call.headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        &call.body,
    )?;
    apply_scale(call, |_| Ok(body.clone())).await
}

pub async fn patch(call: &Call<'_>) -> ApiResult<Response> {
    let (kind, patch_value) = patch_body(call)?;
    let schema = Schema::named(call.api.schemas, SCALE_SCHEMA);
    apply_scale(call, |scale| {
        patch::apply(kind, scale, &patch_value, schema).map_err(patch_error)
    })
    .await
}
