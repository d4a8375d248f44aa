//! PersistentVolumeClaims: what may change once created.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::persistent_volume::{access_modes, storage_class, terminating_or};
use super::{Kind, NONE};
use crate::error::FieldError;
use crate::resources::defaults::{set_missing, status};
use crate::resources::fields::Field;
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::validation::Errors;
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct PersistentVolumeClaim;

impl Kind for PersistentVolumeClaim {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::PersistentVolumeClaim>(
            self,
            &["pvc"],
            NONE,
            &[Status],
        )]
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(spec) = object.get_mut("spec") {
            set_missing(spec, "volumeMode", json!("Filesystem"));
        }
        set_missing(status(object), "phase", json!("Pending"));
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        validate(object, old, errs)
    }

    fn initial_status(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Pending"}))
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[Field::new("spec.volumeName", "/spec/volumeName")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Status"),
            Column::text("Volume"),
            Column::text("Capacity"),
            Column::text("Access Modes"),
            Column::text("StorageClass"),
            Column::text("VolumeAttributesClass"),
            AGE,
            Column::text("VolumeMode").wide(),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let bound = spec["volumeName"].as_str().is_some_and(|v| !v.is_empty());
        Row::new()
            .cell("Status", terminating_or(o, &status["phase"]))
            .cell("Volume", or(&spec["volumeName"], ""))
            .cell(
                "Capacity",
                if bound {
                    or(&status["capacity"]["storage"], "0")
                } else {
                    String::new()
                },
            )
            .cell(
                "Access Modes",
                if bound {
                    access_modes(&status["accessModes"])
                } else {
                    String::new()
                },
            )
            .cell("StorageClass", storage_class(o))
            .cell(
                "VolumeAttributesClass",
                or(&spec["volumeAttributesClassName"], "<unset>"),
            )
            .cell("VolumeMode", or(&spec["volumeMode"], "<unset>"))
    }
}

fn validate(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    if spec["accessModes"].as_array().is_none_or(|a| a.is_empty()) {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if spec.pointer("/resources/requests/storage").is_none() {
        errs.push(FieldError::required("spec.resources[storage]", ""));
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(r) = v
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
            {
                r.remove("storage");
            }
            if let Some(m) = v.as_object_mut() {
                // The binder fills these in after creation.
                m.remove("volumeName");
                m.remove("storageClassName");
            }
            v
        };
        if strip(spec) != strip(&old["spec"]) {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
}
