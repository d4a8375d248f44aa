//! ReplicaSets.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::resources::defaults::{set_missing, spec, template};
use crate::resources::fields::Field;
use crate::resources::table::{
    AGE, CONTAINERS, Column, IMAGES, NAME, Row, SELECTOR, int, selector,
};
use crate::resources::validation::Errors;
use crate::resources::validation::workloads::replicated;
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct ReplicaSet;

impl Kind for ReplicaSet {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<apps::ReplicaSet>(
            self,
            &["rs"],
            ALL,
            &[Status, Scale],
        )]
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        set_missing(spec, "replicas", json!(1));
        template(spec);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        replicated(object, old, errs);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[Field::new("status.replicas", "/status/replicas").or("0")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::int("Desired"),
            Column::int("Current"),
            Column::int("Ready"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        Row::new()
            .cell("Desired", spec["replicas"].as_i64().unwrap_or(1))
            .cell("Current", int(&status["replicas"]))
            .cell("Ready", int(&status["readyReplicas"]))
            .containers(&spec["template"]["spec"])
            .cell("Selector", selector(&spec["selector"]))
    }
}
