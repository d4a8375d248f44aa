//! `metadata`: names per kind, labels, annotations, finalizers, owner references.

use serde_json::{Value, json};

use super::{Errors, names};
use crate::error::FieldError;
use crate::resources::ResourceType;

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

pub fn object_meta(rt: &ResourceType, object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        errs.name("metadata.name", name, rt.rules.name_rule()(name));
    }
    if rt.namespaced {
        let ns = meta["namespace"].as_str().unwrap_or_default();
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.name("metadata.namespace", ns, names::dns1123_label(ns));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        labels_map(labels, "metadata.labels", errs);
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in annotations {
            errs.name(
                "metadata.annotations",
                k,
                names::qualified_name(&k.to_ascii_lowercase()),
            );
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > ANNOTATIONS_LIMIT {
            errs.push(FieldError::new(
                crate::error::FieldErrorKind::TooLong,
                "metadata.annotations",
                None,
                format!("may not be more than {ANNOTATIONS_LIMIT} bytes"),
            ));
        }
    }
    finalizers(meta, old, errs);
    owner_references(meta, errs);
}

pub fn labels_map(labels: &serde_json::Map<String, Value>, path: &str, errs: &mut Errors) {
    for (k, v) in labels {
        errs.name(path, k, names::qualified_name(k));
        let v = v.as_str().unwrap_or_default();
        errs.name(path, v, names::label_value(v));
    }
}

fn finalizers(meta: &Value, old: Option<&Value>, errs: &mut Errors) {
    let Some(list) = meta["finalizers"].as_array() else {
        return;
    };
    for (i, f) in list.iter().enumerate() {
        let s = f.as_str().unwrap_or_default();
        let path = format!("metadata.finalizers[{i}]");
        let msgs = names::qualified_name(s);
        if !msgs.is_empty() {
            errs.name(&path, s, msgs);
        } else if !s.contains('/') && !STANDARD_FINALIZERS.contains(&s) {
            errs.push(FieldError::invalid(
                &path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    if list.iter().any(|f| f == "orphan") && list.iter().any(|f| f == "foregroundDeletion") {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            &Value::Array(list.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    if let Some(old) = old
        && old["metadata"].get("deletionTimestamp").is_some()
    {
        let before = old["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let added: Vec<&Value> = list.iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    json!(added)
                ),
            ));
        }
    }
}

fn owner_references(meta: &Value, errs: &mut Errors) {
    let Some(refs) = meta["ownerReferences"].as_array() else {
        return;
    };
    let mut controllers = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r[field].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(
                    format!("metadata.ownerReferences[{i}].{field}"),
                    "must not be empty",
                ));
            }
        }
        if r["controller"] == true {
            controllers.push(format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            "metadata.ownerReferences",
            &Value::Array(refs.clone()),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
}
