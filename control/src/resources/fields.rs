//! Field selectors: which fields a kind can be selected by (its
//! `Kind::fields`, as Kubernetes' field label conversion functions define
//! them) and their values as strings.

use serde_json::Value;

use super::ResourceType;

/// One selectable field of a kind.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The name in a selector, e.g. `spec.nodeName`.
    pub name: &'static str,
    /// Where it is in the object, as a JSON pointer.
    pub pointer: &'static str,
    /// Its value when absent: Kubernetes selects an absent boolean as
    /// `false` and an absent count as `0`.
    pub absent: &'static str,
}

impl Field {
    pub const fn new(name: &'static str, pointer: &'static str) -> Field {
        Field {
            name,
            pointer,
            absent: "",
        }
    }

    /// The same field, reading as `absent` when not set.
    pub const fn or(self, absent: &'static str) -> Field {
        Field { absent, ..self }
    }
}

const NAME: Field = Field::new("metadata.name", "/metadata/name");
const NAMESPACE: Field = Field::new("metadata.namespace", "/metadata/namespace");

fn find(rt: &ResourceType, field: &str) -> Option<Field> {
    [NAME, NAMESPACE]
        .iter()
        .chain(rt.rules.fields())
        .find(|f| f.name == field)
        .copied()
}

/// Whether `field` can be used in a field selector on this kind.
pub fn supported(rt: &ResourceType, field: &str) -> bool {
    find(rt, field).is_some()
}

/// The value of a selectable field as a string. Booleans and numbers
/// print as Kubernetes prints them (`true`, `3`).
pub fn value(rt: &ResourceType, object: &Value, field: &str) -> String {
    let Some(f) = find(rt, field) else {
        return String::new();
    };
    match object.pointer(f.pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        None => f.absent.to_string(),
        _ => String::new(),
    }
}
