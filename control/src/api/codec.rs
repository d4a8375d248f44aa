//! Request bodies in (JSON, YAML, Kubernetes protobuf) and responses out
//! (JSON objects and lists, Tables, partial object metadata, Status).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::protobuf;
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::resources::table::{self, IncludeObject};

/// The largest request body accepted: as large as an object may be.
pub const MAX_BODY: usize = crate::limits::MAX_OBJECT_BYTES;

/// Decodes a request body by its `Content-Type`.
pub fn decode(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table(IncludeObject),
    Metadata,
}

impl Rendering {
    pub fn from_accept(accept: &str, include: Option<&str>) -> ApiResult<Rendering> {
        // The first acceptable media type wins, as content negotiation goes.
        for media in accept.split(',') {
            let media = media.trim();
            if media.contains("as=Table") && media.contains("g=meta.k8s.io") {
                return IncludeObject::parse(include)
                    .map(Rendering::Table)
                    .map_err(ApiError::bad_request);
            }
            if media.contains("as=PartialObjectMetadata") {
                return Ok(Rendering::Metadata);
            }
            if media.starts_with("application/json")
                || media.starts_with("*/*")
                || media.starts_with("application/*")
                || media.is_empty()
            {
                return Ok(Rendering::Object);
            }
        }
        if accept.contains("application/vnd.kubernetes.protobuf") || accept.contains("yaml") {
            return Ok(Rendering::Object);
        }
        Err(ApiError::not_acceptable(
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ))
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

pub fn bytes_response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.to_status());
    let retry = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64());
    if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

/// One object, rendered as asked.
pub fn render_object(rt: &ResourceType, object: &Value, how: Rendering) -> Value {
    match how {
        Rendering::Object => object.clone(),
        Rendering::Metadata => partial_metadata(object),
        Rendering::Table(include) => table::table(
            rt,
            &[object],
            json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
            include,
            true,
        ),
    }
}

/// A list, rendered as asked.
pub fn render_list(rt: &ResourceType, items: &[&Value], list_meta: Value, how: Rendering) -> Value {
    match how {
        Rendering::Object => json!({
            "kind": rt.list_kind,
            "apiVersion": rt.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
        Rendering::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(|o| partial_metadata(o)).collect::<Vec<_>>(),
        }),
        Rendering::Table(include) => table::table(rt, items, list_meta, include, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_alias_bomb_is_a_bad_request() {
        // Nine levels of nine aliases: a few hundred bytes that expand to
        // 387 million strings.
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ('a'..='h').zip('b'..='i') {
            let refs = vec![format!("*{prev}"); 9].join(",");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = decode("application/yaml", bomb.as_bytes()).unwrap_err();
        assert_eq!(e.code, 400, "{}", e.message);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn documents_nested_past_the_readers_limit_are_bad_requests() {
        let json = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            decode("application/json", json.as_bytes())
                .unwrap_err()
                .code,
            400
        );
        let yaml = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            decode("application/yaml", yaml.as_bytes())
                .unwrap_err()
                .code,
            400
        );
    }
}
