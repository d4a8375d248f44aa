//! Validation of objects on create and update, reporting field errors the
//! way Kubernetes does (path, kind of error, offending value): metadata
//! for every kind, then the kind's own `Kind::validate`, with the checks
//! several kinds share (pod templates, workload specs, data maps).

mod data;
mod meta;
pub mod names;
pub(crate) mod pod;
#[cfg(test)]
mod tests;
pub(crate) mod workloads;

pub(crate) use data::{immutable_data, over_limit, sized_keys, too_long};
pub(crate) use meta::labels_map;

use serde_json::Value;

use super::ResourceType;
use crate::error::FieldError;

/// Errors collected while validating one object.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// One `Invalid` error per message of a name check.
    pub(crate) fn name(&mut self, field: &str, value: &str, messages: Vec<String>) {
        for m in messages {
            self.push(FieldError::invalid(field, &Value::from(value), m));
        }
    }

    /// Requires an integer field to be `>= 0` when present.
    pub(crate) fn non_negative(&mut self, object: &Value, field: &str, path: &str) {
        if let Some(n) = object.get(field).and_then(Value::as_i64)
            && n < 0
        {
            self.push(FieldError::invalid(
                path,
                &Value::from(n),
                "must be greater than or equal to 0",
            ));
        }
    }

    /// `field` must be one of `allowed` when present.
    pub(crate) fn one_of(&mut self, object: &Value, field: &str, path: &str, allowed: &[&str]) {
        if let Some(v) = object.get(field).filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            self.push(FieldError::not_supported(path, v, allowed));
        }
    }

    /// `new[field]` must equal `old[field]`.
    pub(crate) fn immutable(&mut self, new: &Value, old: &Value, pointer: &str, path: &str) {
        let n = new.pointer(pointer);
        if n != old.pointer(pointer) {
            self.push(FieldError::immutable(path, n.unwrap_or(&Value::Null)));
        }
    }
}

/// Validates `object` (an update when `old` is given): its metadata, then
/// what its kind requires.
pub fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errors::default();
    meta::object_meta(rt, object, old, &mut errs);
    rt.rules.validate(object, old, &mut errs);
    errs.0
}
