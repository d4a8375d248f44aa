//! The four PATCH content types: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386), strategic merge patch, and server-side apply.

mod bounded;
pub mod strategic;
pub mod strategies;

use serde_json::Value;

pub use strategic::Schema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// A patch that cannot be applied; `status` is the HTTP code Kubernetes uses.
#[derive(Debug, Clone)]
pub struct PatchError {
    pub status: u16,
    pub message: String,
}

impl PatchError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        PatchError {
            status: 400,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        PatchError {
            status: 413,
            message: format!("Request entity too large: {}", message.into()),
        }
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        PatchError {
            status: 422,
            message: message.into(),
        }
    }

    /// A malformed patch the server cannot make sense of. (Kubernetes
    /// answers these with a bare 500; a 422 says more truthfully whose
    /// fault it is and kubectl prints the message either way.)
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::unprocessable(message)
    }
}

/// Parses a patch body: YAML for server-side apply, JSON otherwise.
pub fn parse(kind: PatchType, body: &[u8]) -> Result<Value, PatchError> {
    match kind {
        PatchType::Apply => serde_yaml::from_slice(body)
            .map_err(|e| PatchError::bad_request(format!("error decoding YAML: {e}"))),
        _ => serde_json::from_slice(body)
            .map_err(|e| PatchError::bad_request(format!("invalid JSON document: {e}"))),
    }
}

/// Applies `patch` of `kind` to `current`.
pub fn apply(
    kind: PatchType,
    current: &Value,
    patch: &Value,
    schema: Schema<'_>,
) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| PatchError::bad_request(format!("invalid JSON patch: {e}")))?;
            bounded::json_patch(current, &ops)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::bad_request(
                    "a merge patch must be a JSON object",
                ));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => strategic::apply(current, patch, schema),
        // Server-side apply, simplified: the applied configuration is merged
        // into the live object with the strategic rules (maps and keyed
        // lists merge, other lists are replaced). Field ownership is not
        // tracked, so fields dropped from a later apply are not removed.
        PatchType::Apply => {
            if !patch.is_object() {
                return Err(PatchError::bad_request("an apply patch must be an object"));
            }
            strategic::apply(current, &strip_directives(patch.clone()), schema)
        }
    }
}

/// Server-side apply bodies are plain objects; a `$`-key in them means
/// nothing and must not be read as a directive.
fn strip_directives(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k, strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_directives).collect()),
        other => other,
    }
}
