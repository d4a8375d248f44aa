//! Data maps (ConfigMaps and Secrets): key names, total size, immutability.

use base64::Engine;
use serde_json::Value;

use super::{Errors, names};
use crate::error::{FieldError, FieldErrorKind};

const DATA_LIMIT: usize = 1024 * 1024;

/// The error of data over the size limit.
pub(crate) fn too_long(path: &str) -> FieldError {
    FieldError::new(
        FieldErrorKind::TooLong,
        path,
        None,
        format!("may not be more than {DATA_LIMIT} bytes"),
    )
}

/// Checks the keys of `map[field]` and returns the size of its values
/// (decoded, for base64 fields), to compare with the limit.
pub(crate) fn sized_keys(map: &Value, field: &str, errs: &mut Errors) -> usize {
    let mut size = 0;
    for (k, v) in map[field].as_object().into_iter().flatten() {
        errs.name(&format!("{field}[{k}]"), k, names::config_key(k));
        size += match v.as_str() {
            Some(s) if field == "binaryData" || field == "data" && map["type"].is_string() => {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_or(s.len(), |b| b.len())
            }
            Some(s) => s.len(),
            None => 0,
        };
    }
    size
}

/// After `immutable: true`, data may not change.
pub(crate) fn immutable_data(
    object: &Value,
    old: Option<&Value>,
    fields: &[&str],
    errs: &mut Errors,
) {
    let Some(old) = old.filter(|o| o["immutable"] == true) else {
        return;
    };
    if object["immutable"] != true {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if object.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(
                *f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// Whether `size` bytes of data are over the limit.
pub(crate) fn over_limit(size: usize) -> bool {
    size > DATA_LIMIT
}
