//! ConfigMaps: key names, total size, immutability.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::error::FieldError;
use crate::resources::table::{AGE, Column, NAME, Row};
use crate::resources::validation::{Errors, immutable_data, over_limit, sized_keys, too_long};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct ConfigMap;

impl Kind for ConfigMap {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::ConfigMap>(self, &["cm"], NONE, &[])]
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let size = sized_keys(object, "data", errs) + sized_keys(object, "binaryData", errs);
        if let (Some(d), Some(b)) = (object["data"].as_object(), object["binaryData"].as_object()) {
            for k in d.keys().filter(|k| b.contains_key(*k)) {
                errs.push(FieldError::invalid(
                    format!("data[{k}]"),
                    &json!(k),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        if over_limit(size) {
            errs.push(too_long("[]"));
        }
        immutable_data(object, old, &["data", "binaryData"], errs);
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Data"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let n = o["data"].as_object().map_or(0, |m| m.len())
            + o["binaryData"].as_object().map_or(0, |m| m.len());
        Row::new().cell("Data", n)
    }
}
