//! Namespaces: their finalizer, their phase, the label naming them.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::resources::defaults::entry_object;
use crate::resources::fields::Field;
use crate::resources::lifecycle::copy_field;
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::validation::{Errors, names};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct Namespace;

impl Kind for Namespace {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Namespace>(
            self,
            &["ns"],
            NONE,
            &[Status, Finalize],
        )]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1123_label
    }

    fn defaults(&self, object: &mut Value) {
        let name = object["metadata"]["name"].clone();
        if let Some(meta) = object["metadata"].as_object_mut() {
            let labels = entry_object(meta, "labels");
            labels.insert("kubernetes.io/metadata.name".into(), name);
        }
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        for (i, f) in object["spec"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let s = f.as_str().unwrap_or_default();
            errs.name(
                &format!("spec.finalizers[{i}]"),
                s,
                names::qualified_name(s),
            );
        }
    }

    fn initial_status(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Active"}))
    }

    /// The `kubernetes` finalizer holds a namespace until its objects are gone.
    fn on_create(&self, object: &mut Value) {
        let spec = object
            .as_object_mut()
            .expect("normalized objects are maps")
            .entry("spec")
            .or_insert_with(|| json!({}));
        let finalizers = spec
            .as_object_mut()
            .expect("spec is a map")
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == "kubernetes")
        {
            list.push(json!("kubernetes"));
        }
    }

    /// The finalizers change only through `/finalize`.
    fn keep_on_main_update(&self, new: &mut Value, old: &Value) {
        if let Some(spec) = new.get_mut("spec") {
            copy_field(&old["spec"], spec, "finalizers");
        }
    }

    fn on_deletion_start(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Terminating");
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[Field::new("status.phase", "/status/phase")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Status"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Status", or(&o["status"]["phase"], ""))
    }
}
