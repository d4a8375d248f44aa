//! Secrets: `stringData` folded into `data`, the keys each type requires.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::error::FieldError;
use crate::resources::defaults::set_missing;
use crate::resources::fields::Field;
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::validation::{Errors, immutable_data, over_limit, sized_keys, too_long};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct Secret;

impl Kind for Secret {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Secret>(self, &[], NONE, &[])]
    }

    fn defaults(&self, object: &mut Value) {
        set_missing(object, "type", json!("Opaque"));
        merge_string_data(object);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        if over_limit(sized_keys(object, "data", errs)) {
            errs.push(too_long("data"));
        }
        let has = |k: &str| object["data"].get(k).is_some();
        let required: &[&str] = match object["type"].as_str().unwrap_or_default() {
            "kubernetes.io/tls" => &["tls.crt", "tls.key"],
            "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
            "kubernetes.io/dockercfg" => &[".dockercfg"],
            "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
            _ => &[],
        };
        for k in required {
            if !has(k) {
                errs.push(FieldError::required(format!("data[{k}]"), ""));
            }
        }
        if object["type"] == "kubernetes.io/basic-auth" && !has("username") && !has("password") {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        if let Some(old) = old {
            errs.immutable(object, old, "/type", "type");
        }
        immutable_data(object, old, &["data"], errs);
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[Field::new("type", "/type")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Type"), Column::text("Data"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new()
            .cell("Type", or(&o["type"], ""))
            .cell("Data", o["data"].as_object().map_or(0, |m| m.len()))
    }
}

/// A Secret's `stringData` is write-only: it is folded into `data`.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            data.insert(k, json!(encoded));
        }
    }
}
