//! Resource requests: get, list, create, update, patch, delete and
//! deletecollection, and the pod subresources served by the control plane.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::Api;
use super::auth::User;
use super::codec::{self, Rendering, json_response};
use super::params::{FieldValidation, Params};
use super::path::ResourcePath;
use super::{scale, watch};
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, Deleted, Propagation, Target, WriteOptions};
use crate::openapi::unknown_fields;
use crate::patch::{self, PatchType, Schema};
use crate::resources::{ResourceType, Subresource};

/// The parts of a request a handler needs, with the body read.
pub struct Call<'a> {
    pub api: &'a std::sync::Arc<Api>,
    /// Who is asking (after impersonation).
    pub user: &'a User,
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The client's address (none for the control plane's own loops,
    /// which call the API in process).
    pub client: Option<std::net::IpAddr>,
}

impl Call<'_> {
    pub fn target(&self) -> Target<'_> {
        Target {
            rt: self.rt,
            namespace: self.namespace.as_deref(),
            name: self.name.as_deref().unwrap_or_default(),
        }
    }

    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn rendering(&self) -> ApiResult<Rendering> {
        Rendering::from_accept(
            self.header(header::ACCEPT),
            self.params.get("includeObject"),
        )
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            dry_run: self.params.dry_run(),
        }
    }

    fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE)
    }

    /// Checks what only the caller's own rights decide beyond the verb:
    /// that a role or binding grants nothing the caller does not hold.
    pub fn admit(&self, object: &Value) -> ApiResult<()> {
        if self.rt.group != "rbac.authorization.k8s.io" {
            return Ok(());
        }
        crate::authz::escalation::check(
            &self.api.authorizer,
            self.user,
            self.rt.plural,
            self.namespace.as_deref().unwrap_or_default(),
            object,
        )
    }
}

pub async fn handle(
    api: &std::sync::Arc<Api>,
    user: &User,
    rp: ResourcePath,
    req: Request,
) -> ApiResult<Response> {
    use Subresource::*;
    if matches!(
        rp.subresource,
        Some(Log | Exec | Attach | PortForward | Proxy)
    ) && rp.name.is_some()
    {
        return super::node_proxy::proxy(api, rp, req).await;
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, codec::MAX_BODY);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            return Err(ApiError::too_large(format!(
                "the request body is larger than the limit of {} bytes",
                codec::MAX_BODY
            )));
        }
    };
    if rp.rt.namespaced && rp.name.is_some() && rp.namespace.is_none() {
        return Err(ApiError::not_found_path(
            "the server could not find the requested resource",
        ));
    }
    let client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let call = Call {
        api,
        user,
        rt: rp.rt,
        namespace: rp.namespace,
        name: rp.name,
        params: Params::parse(parts.uri.query()),
        headers: parts.headers,
        body,
        client,
    };
    let method = parts.method;
    let has_name = call.name.is_some();
    match (method, has_name, rp.subresource) {
        (Method::GET, false, None) if rp.watch || call.params.watch() => watch::serve(&call).await,
        (Method::GET, true, None) if rp.watch => watch::serve(&call).await,
        (Method::GET, false, None) => list(&call).await,
        (Method::GET, true, None | Some(Status)) => get(&call).await,
        (Method::GET, true, Some(Scale)) => scale::get(&call).await,
        (Method::POST, false, None) => create(&call).await,
        (Method::POST, true, Some(Binding)) => bind(&call).await,
        (Method::POST, true, Some(Eviction)) => evict(&call).await,
        (Method::POST, true, Some(Token)) => super::service_account_token::create(&call).await,
        (Method::PUT, true, Some(sub @ (Status | Finalize))) => update(&call, Some(sub)).await,
        (Method::PUT, true, None) => update(&call, None).await,
        (Method::PUT, true, Some(Scale)) => scale::update(&call).await,
        (Method::PATCH, true, None) => patch(&call, None).await,
        (Method::PATCH, true, Some(Status)) => patch(&call, Some(Status)).await,
        (Method::PATCH, true, Some(Scale)) => scale::patch(&call).await,
        (Method::DELETE, true, None) => delete(&call).await,
        (Method::DELETE, false, None) => delete_collection(&call).await,
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

async fn get(call: &Call<'_>) -> ApiResult<Response> {
    let how = call.rendering()?;
    let object = call.api.objects.get(call.target()).await?;
    if how == Rendering::Object {
        let body = call.api.encoded.json(&object).to_vec();
        return Ok(codec::bytes_response(
            StatusCode::OK,
            "application/json",
            body,
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &codec::render_object(call.rt, &object, how),
    ))
}

async fn list(call: &Call<'_>) -> ApiResult<Response> {
    let how = call.rendering()?;
    let opts = call.params.list_options()?;
    let result = call
        .api
        .objects
        .list(call.rt, call.namespace.as_deref(), &opts)
        .await?;
    let mut meta = json!({"resourceVersion": result.revision.to_string()});
    if let Some(c) = &result.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = result.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    if how == Rendering::Object {
        let items: Vec<bytes::Bytes> = result
            .items
            .iter()
            .map(|o| call.api.encoded.json(o))
            .collect();
        let body = super::encoded::list(call.rt.list_kind, &call.rt.api_version(), &meta, &items);
        return Ok(codec::bytes_response(
            StatusCode::OK,
            "application/json",
            body,
        ));
    }
    let items: Vec<&Value> = result.items.iter().map(|o| o.as_ref()).collect();
    Ok(json_response(
        StatusCode::OK,
        &codec::render_list(call.rt, &items, meta, how),
    ))
}

/// The strict-decoding error for unknown fields, or warnings to send.
fn check_fields(call: &Call<'_>, object: &Value) -> ApiResult<Vec<String>> {
    let validation = call.params.field_validation()?;
    if validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let Some(root) = call.api.schemas.definition(&call.rt.schema_name) else {
        return Ok(Vec::new());
    };
    let unknown: Vec<String> = unknown_fields(call.api.schemas, root, object)
        .into_iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    if validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            call.rt.kind,
            call.rt.version,
            call.rt.kind,
            unknown.join(", ")
        )));
    }
    Ok(unknown)
}

fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// Decodes the body and checks its fields against the schema.
fn body_object(call: &Call<'_>) -> ApiResult<(Value, Vec<String>)> {
    let object = codec::decode(call.content_type(), &call.body)?;
    let warnings = check_fields(call, &object)?;
    Ok((object, warnings))
}

async fn create(call: &Call<'_>) -> ApiResult<Response> {
    if call.rt.namespaced && call.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let how = call.rendering()?;
    let (object, warnings) = body_object(call)?;
    call.admit(&object)?;
    let created = call
        .api
        .objects
        .create(
            call.rt,
            call.namespace.as_deref(),
            object,
            call.write_options(),
        )
        .await?;
    Ok(with_warnings(
        json_response(
            StatusCode::CREATED,
            &codec::render_object(call.rt, &created, how),
        ),
        &warnings,
    ))
}

async fn update(call: &Call<'_>, sub: Option<Subresource>) -> ApiResult<Response> {
    let how = call.rendering()?;
    let (object, warnings) = body_object(call)?;
    if sub.is_none() {
        call.admit(&object)?;
    }
    let updated = call
        .api
        .objects
        .update(call.target(), object, sub, call.write_options())
        .await?;
    Ok(with_warnings(
        json_response(
            StatusCode::OK,
            &codec::render_object(call.rt, &updated, how),
        ),
        &warnings,
    ))
}

/// Parses the patch in the request body by its content type.
pub fn patch_body(call: &Call<'_>) -> ApiResult<(PatchType, Value)> {
    let kind = PatchType::from_content_type(call.content_type())
        .ok_or_else(|| ApiError::unsupported_media_type(call.content_type()))?;
    let value = patch::parse(kind, &call.body).map_err(patch_error)?;
    Ok((kind, value))
}

pub fn patch_error(e: patch::PatchError) -> ApiError {
    match e.status {
        400 => ApiError::bad_request(e.message),
        413 => ApiError::too_large(e.message),
        _ => ApiError::new(422, "Invalid", e.message),
    }
}

/// A patch may pin the revision it was computed against.
pub fn check_patched_revision(call: &Call<'_>, current: &Value, patched: &Value) -> ApiResult<()> {
    let rv = patched.pointer("/metadata/resourceVersion");
    if rv.is_some_and(|rv| !rv.is_null() && rv != &current["metadata"]["resourceVersion"]) {
        return Err(ApiError::modified(
            call.rt,
            call.name.as_deref().unwrap_or_default(),
        ));
    }
    Ok(())
}

async fn patch(call: &Call<'_>, sub: Option<Subresource>) -> ApiResult<Response> {
    let how = call.rendering()?;
    let (kind, patch_value) = patch_body(call)?;
    let target = call.target();
    if kind == PatchType::Apply && sub.is_none() {
        match call.api.objects.get(target).await {
            Err(e) if e.code == 404 => {
                let warnings = check_fields(call, &patch_value)?;
                call.admit(&patch_value)?;
                let created = call
                    .api
                    .objects
                    .create(
                        call.rt,
                        call.namespace.as_deref(),
                        patch_value,
                        call.write_options(),
                    )
                    .await?;
                return Ok(with_warnings(
                    json_response(
                        StatusCode::CREATED,
                        &codec::render_object(call.rt, &created, how),
                    ),
                    &warnings,
                ));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let schema = Schema::named(call.api.schemas, &call.rt.schema_name);
    let mut warnings = Vec::new();
    let updated = call
        .api
        .objects
        .update_with(target, sub, call.write_options(), |current| {
            let patched = patch::apply(kind, current, &patch_value, schema).map_err(patch_error)?;
            check_patched_revision(call, current, &patched)?;
            warnings = check_fields(call, &patched)?;
            if sub.is_none() {
                call.admit(&patched)?;
            }
            Ok(patched)
        })
        .await?;
    Ok(with_warnings(
        json_response(
            StatusCode::OK,
            &codec::render_object(call.rt, &updated, how),
        ),
        &warnings,
    ))
}

fn delete_options(call: &Call<'_>) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions {
        grace_period_seconds: call.params.grace_period_seconds()?,
        propagation: call.params.propagation()?,
        dry_run: call.params.dry_run(),
        ..Default::default()
    };
    if !call.body.is_empty() {
        let body = codec::decode(call.content_type(), &call.body)?;
        read_delete_options(&body, &mut opts)?;
    }
    Ok(opts)
}

/// Reads a `DeleteOptions` body into `opts`.
fn read_delete_options(body: &Value, opts: &mut DeleteOptions) -> ApiResult<()> {
    if let Some(g) = body["gracePeriodSeconds"].as_i64() {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = body["propagationPolicy"].as_str() {
        opts.propagation =
            Some(Propagation::parse(p).ok_or_else(|| {
                ApiError::bad_request(format!("invalid propagationPolicy {p:?}"))
            })?);
    } else if let Some(o) = body["orphanDependents"].as_bool() {
        opts.propagation = Some(if o {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
    }
    opts.precondition_uid = body["preconditions"]["uid"].as_str().map(String::from);
    opts.precondition_resource_version = body["preconditions"]["resourceVersion"]
        .as_str()
        .map(String::from);
    if body["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
    {
        opts.dry_run = true;
    }
    Ok(())
}

async fn delete(call: &Call<'_>) -> ApiResult<Response> {
    let how = call.rendering()?;
    let opts = delete_options(call)?;
    let outcome = call.api.objects.delete(call.target(), &opts).await?;
    let status = match outcome {
        Deleted::Now(_) => StatusCode::OK,
        Deleted::Pending(_) => StatusCode::ACCEPTED,
    };
    Ok(json_response(
        status,
        &codec::render_object(call.rt, outcome.object(), how),
    ))
}

async fn delete_collection(call: &Call<'_>) -> ApiResult<Response> {
    let opts = delete_options(call)?;
    let list = call
        .api
        .objects
        .list(
            call.rt,
            call.namespace.as_deref(),
            &call.params.list_options()?,
        )
        .await?;
    for o in &list.items {
        let ns = crate::objects::namespace_of(o);
        let target = Target {
            rt: call.rt,
            namespace: (!ns.is_empty()).then_some(ns),
            name: crate::objects::name_of(o),
        };
        match call.api.objects.delete(target, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    ))
}

/// `pods/<name>/binding`: assigns a pod to a node, once.
async fn bind(call: &Call<'_>) -> ApiResult<Response> {
    let body = codec::decode(call.content_type(), &call.body)?;
    let node = body["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid_kind(
            "",
            "Binding",
            call.name.as_deref().unwrap_or_default(),
            &[crate::error::FieldError::required("target.name", "")],
        ));
    }
    let name = call.name.clone().unwrap_or_default();
    call.api
        .objects
        .update_with(call.target(), Some(Subresource::Binding), call.write_options(), |current| {
            if let Some(existing) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(
                    call.rt,
                    &name,
                    format!("pod {name} is already assigned to node {existing:?}"),
                ));
            }
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Err(ApiError::conflict(call.rt, &name, "pod is being deleted, cannot be assigned to a host"));
            }
            let mut pod = current.clone();
            pod["spec"]["nodeName"] = json!(node);
            set_condition(&mut pod, json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": crate::objects::now()}));
            Ok(pod)
        })
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Replaces (or adds) the status condition of the same type.
fn set_condition(object: &mut Value, condition: Value) {
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("array");
    list.retain(|c| c["type"] != condition["type"]);
    list.push(condition);
}

/// `pods/<name>/eviction`: a delete (there are no disruption budgets to honour yet).
async fn evict(call: &Call<'_>) -> ApiResult<Response> {
    let body = codec::decode(call.content_type(), &call.body)?;
    let mut opts = DeleteOptions::default();
    if let Some(d) = body.get("deleteOptions").filter(|d| d.is_object()) {
        read_delete_options(d, &mut opts)?;
    }
    call.api.objects.delete(call.target(), &opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
