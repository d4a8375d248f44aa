//! Unknown-field detection for `fieldValidation=Strict|Warn`: walks a body
//! against its schema and names every field the schema does not know, as
//! Kubernetes' strict decoder reports them (`spec.containers[0].foo`).

use serde_json::Value;

use super::Schemas;

/// Paths of the fields in `value` that `schema` does not declare.
pub fn unknown_fields(schemas: &Schemas, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schemas, schema, value, String::new(), &mut out);
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(schemas: &Schemas, schema: &Value, value: &Value, path: String, out: &mut Vec<String>) {
    let (s, _) = schemas.resolve(schema);
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    match props.get(k) {
                        Some(ps) => walk(schemas, ps, v, join(&path, k), out),
                        None => out.push(join(&path, k)),
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, v) in map {
                    walk(schemas, ap, v, join(&path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(schemas, is, v, format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}
