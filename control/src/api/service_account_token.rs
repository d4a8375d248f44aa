//! ServiceAccount tokens over the API: the TokenRequest subresource
//! (`serviceaccounts/<name>/token`, `kubectl create token`), and the
//! authentication of a request bearing one — valid only while the
//! ServiceAccount, and the Pod or Secret it was bound to, still exist.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Api;
use super::auth::User;
use super::codec::{self, json_response};
use super::resource::Call;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::objects::Target;
use crate::tokens::{self, Claims, Kubernetes, ObjectRef};

/// kube-apiserver's floor for a requested lifetime, and its default.
const MIN_SECONDS: i64 = 600;
const DEFAULT_SECONDS: i64 = 3600;
const MAX_SECONDS: i64 = 1 << 32;

async fn uid_of(api: &Api, plural: &str, namespace: &str, name: &str) -> Option<String> {
    let rt = api.catalog.lookup("", "v1", plural)?;
    let o = api
        .objects
        .get(Target {
            rt,
            namespace: Some(namespace),
            name,
        })
        .await
        .ok()?;
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return None;
    }
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(String::from)
}

/// Whether what a token names is still there, as it was when issued.
async fn still_bound(api: &Api, c: &Claims) -> bool {
    let k = &c.kubernetes;
    let same = |found: Option<String>, r: &ObjectRef| found.is_some_and(|uid| uid == r.uid);
    if !same(
        uid_of(api, "serviceaccounts", &k.namespace, &k.serviceaccount.name).await,
        &k.serviceaccount,
    ) {
        return false;
    }
    if let Some(pod) = &k.pod
        && !same(uid_of(api, "pods", &k.namespace, &pod.name).await, pod)
    {
        return false;
    }
    if let Some(secret) = &k.secret
        && !same(
            uid_of(api, "secrets", &k.namespace, &secret.name).await,
            secret,
        )
    {
        return false;
    }
    true
}

/// The claims of a token this server issued for `audiences`, still bound.
pub async fn verify(api: &Api, token: &str, audiences: &[&str]) -> Option<Claims> {
    let signer = api.tokens.as_ref()?;
    if !tokens::looks_like_jwt(token) {
        return None;
    }
    let claims = signer.verify(token, audiences).ok()?;
    still_bound(api, &claims).await.then_some(claims)
}

/// The user a ServiceAccount token in the request authenticates.
pub async fn user(api: &Api, headers: &axum::http::HeaderMap) -> Option<User> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = peapod_common::token::bearer(value)?;
    Some(verify(api, token, &[tokens::ISSUER]).await?.user())
}

/// `POST .../serviceaccounts/<name>/token`: a token for the ServiceAccount,
/// for the audiences and time asked (at least ten minutes), bound to a Pod
/// or Secret of its namespace when asked.
pub async fn create(call: &Call<'_>) -> ApiResult<Response> {
    let Some(signer) = call.api.tokens.as_ref() else {
        return Err(ApiError::service_unavailable(
            "this server does not issue ServiceAccount tokens",
        ));
    };
    let ns = call.namespace.clone().unwrap_or_default();
    let name = call.name.clone().unwrap_or_default();
    let sa = call.api.objects.get(call.target()).await?;
    let mut request = codec::decode(call.header(axum::http::header::CONTENT_TYPE), &call.body)?;
    if !request.is_object() {
        return Err(ApiError::bad_request("a TokenRequest must be an object"));
    }
    let spec = request["spec"].clone();
    let invalid = |f: FieldError| {
        ApiError::invalid_kind("authentication.k8s.io", "TokenRequest", &name, &[f])
    };
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_SECONDS);
    if seconds < MIN_SECONDS {
        return Err(invalid(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration less than 10 minutes",
        )));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        )));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => vec![tokens::ISSUER.to_string()],
    };
    let mut kubernetes = Kubernetes {
        namespace: ns.clone(),
        serviceaccount: ObjectRef {
            name: name.clone(),
            uid: sa["metadata"]["uid"].as_str().unwrap_or_default().into(),
        },
        ..Default::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => {
                return Err(invalid(FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    &bound["kind"],
                    &["Pod", "Secret"],
                )));
            }
        };
        let object_name = bound["name"].as_str().unwrap_or_default();
        let Some(uid) = uid_of(call.api, plural, &ns, object_name).await else {
            return Err(ApiError::not_found_path(format!(
                "{plural} {object_name:?} not found"
            )));
        };
        if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record ({uid})"
                ),
            ));
        }
        let r = Some(ObjectRef {
            name: object_name.to_string(),
            uid,
        });
        if kind == "Pod" {
            kubernetes.pod = r;
        } else {
            kubernetes.secret = r;
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        iss: tokens::ISSUER.into(),
        sub: tokens::subject(&ns, &name),
        aud: audiences.clone(),
        exp: now + seconds,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes,
    };
    let token = signer
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(seconds);
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(json_response(StatusCode::CREATED, &request))
}
