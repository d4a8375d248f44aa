//! The reviews, answered from the authorizer and never stored:
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
//! (`can-i --list`), SubjectAccessReview and LocalSubjectAccessReview
//! (asking for someone else), SelfSubjectReview (`kubectl auth whoami`).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

use super::Api;
use super::auth::User;
use super::codec::{self, json_response};
use super::path::ResourcePath;
use crate::authz::Attributes;
use crate::error::{ApiError, ApiResult, FieldError};

/// A review body: a few attributes.
const MAX_BODY: usize = 64 * 1024;

pub fn is_review(rp: &ResourcePath) -> bool {
    matches!(
        rp.rt.group,
        "authorization.k8s.io" | "authentication.k8s.io"
    )
}

pub async fn handle(
    api: &std::sync::Arc<Api>,
    user: &User,
    rp: ResourcePath,
    req: Request,
) -> ApiResult<Response> {
    if req.method() != axum::http::Method::POST || rp.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    // A local review lives in a namespace: there is none to create at the
    // cluster path (kube-apiserver serves only lists there).
    if rp.rt.namespaced && rp.namespace.is_none() {
        return Err(ApiError::not_found_path(
            "the server could not find the requested resource",
        ));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(format!("a review is at most {MAX_BODY} bytes")))?;
    let mut review = codec::decode(&content_type, &body)?;
    if !review.is_object() {
        return Err(ApiError::bad_request("a review must be an object"));
    }
    let invalid =
        |errors: Vec<FieldError>| ApiError::invalid_kind(rp.rt.group, rp.rt.kind, "", &errors);
    let status = match rp.rt.kind {
        "SelfSubjectReview" => json!({"userInfo": {"username": user.name, "groups": user.groups}}),
        "TokenReview" => {
            let token = review
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let asked: Vec<String> = review
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let audiences: Vec<&str> = if asked.is_empty() {
                vec![crate::tokens::ISSUER]
            } else {
                asked.iter().map(String::as_str).collect()
            };
            match super::service_account_token::verify(api, token, &audiences).await {
                Some(claims) => {
                    let who = claims.user();
                    let found: Vec<&String> = claims
                        .aud
                        .iter()
                        .filter(|a| audiences.contains(&a.as_str()))
                        .collect();
                    json!({"authenticated": true,
                        "user": {"username": who.name, "uid": claims.kubernetes.serviceaccount.uid, "groups": who.groups},
                        "audiences": found})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        "SelfSubjectRulesReview" => {
            let ns = review
                .pointer("/spec/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            rules_status(&api.authorizer.index().rules_for(user, ns))
        }
        "SelfSubjectAccessReview" => {
            let a = attributes(&review["spec"], None).map_err(|e| invalid(vec![e]))?;
            access_status(api.authorizer.allows(user, &a))
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let spec = &review["spec"];
            let subject = User {
                name: spec["user"].as_str().unwrap_or_default().to_string(),
                groups: spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(String::from))
                    .collect(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(vec![FieldError::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                )]));
            }
            let a = attributes(spec, rp.namespace.as_deref()).map_err(|e| invalid(vec![e]))?;
            access_status(api.authorizer.allows(&subject, &a))
        }
        other => {
            return Err(ApiError::not_found_path(format!(
                "no review of kind {other}"
            )));
        }
    };
    review["apiVersion"] = json!(rp.rt.api_version());
    review["kind"] = json!(rp.rt.kind);
    if review.get("metadata").is_none_or(|m| !m.is_object()) {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = status;
    Ok(json_response(StatusCode::CREATED, &review))
}

fn access_status(allowed: bool) -> Value {
    if allowed {
        json!({"allowed": true, "reason": "allowed by the cluster's RBAC roles"})
    } else {
        json!({"allowed": false})
    }
}

/// The attributes a review asks about: exactly one of
/// `resourceAttributes` and `nonResourceAttributes`. A local review's
/// namespace is the one in its path.
fn attributes(spec: &Value, local_namespace: Option<&str>) -> Result<Attributes, FieldError> {
    let s = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
    match (
        spec.get("resourceAttributes").filter(|v| v.is_object()),
        spec.get("nonResourceAttributes").filter(|v| v.is_object()),
    ) {
        (Some(r), None) => {
            let mut namespace = s(r, "namespace");
            if let Some(local) = local_namespace {
                if !namespace.is_empty() && namespace != local {
                    return Err(FieldError::invalid(
                        "spec.resourceAttributes.namespace",
                        &json!(namespace),
                        "must match metadata.namespace",
                    ));
                }
                namespace = local.to_string();
            }
            Ok(Attributes::resource(
                &s(r, "verb"),
                &s(r, "group"),
                &s(r, "resource"),
                &s(r, "subresource"),
                &namespace,
                &s(r, "name"),
            ))
        }
        (None, Some(n)) if local_namespace.is_none() => {
            Ok(Attributes::path(&s(n, "verb"), &s(n, "path")))
        }
        _ => Err(FieldError::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// A rules review's status: the rules, resource and non-resource apart.
fn rules_status(rules: &[PolicyRule]) -> Value {
    let mut resource_rules: Vec<Value> = Vec::new();
    let mut non_resource_rules: Vec<Value> = Vec::new();
    for r in rules {
        if let Some(urls) = r.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": urls}));
        }
        if r.resources.as_ref().is_some_and(|x| !x.is_empty()) {
            let mut rule =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if let Some(names) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
                rule["resourceNames"] = json!(names);
            }
            resource_rules.push(rule);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}
