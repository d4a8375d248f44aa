//! DaemonSets: the template generation annotation the controller reads.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::resources::defaults::{entry, set_missing, spec, template};
use crate::resources::table::{
    AGE, CONTAINERS, Column, IMAGES, NAME, Row, SELECTOR, int, labels, selector,
};
use crate::resources::validation::workloads::{selector_matches_template, template_restart_always};
use crate::resources::validation::{Errors, pod};
use crate::resources::{ResourceType, Subresource::*, served};

/// Counts changes to the template, as the DaemonSet controller expects.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

#[derive(Debug)]
pub struct DaemonSet;

impl Kind for DaemonSet {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<apps::DaemonSet>(self, &["ds"], ALL, &[Status])]
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        let strategy = entry(spec, "updateStrategy", json!({}));
        set_missing(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let ru = entry(strategy, "rollingUpdate", json!({}));
            set_missing(ru, "maxUnavailable", json!(1));
            set_missing(ru, "maxSurge", json!(0));
        }
        set_missing(spec, "revisionHistoryLimit", json!(10));
        template(spec);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let spec = &object["spec"];
        selector_matches_template(spec, "daemonset", errs);
        pod::template(&spec["template"], "spec.template", &[], errs);
        template_restart_always(spec, "DaemonSet", errs);
        errs.one_of(
            &spec["updateStrategy"],
            "type",
            "spec.updateStrategy",
            &["RollingUpdate", "OnDelete"],
        );
        if let Some(old) = old {
            errs.immutable(object, old, "/spec/selector", "spec.selector");
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn on_create(&self, object: &mut Value) {
        object["metadata"]["annotations"][TEMPLATE_GENERATION] = json!("1");
    }

    fn on_update(&self, new: &mut Value, old: &Value) {
        let old_tg: i64 = old["metadata"]["annotations"][TEMPLATE_GENERATION]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let tg = if new["spec"]["template"] != old["spec"]["template"] {
            old_tg + 1
        } else {
            old_tg
        };
        new["metadata"]["annotations"][TEMPLATE_GENERATION] = json!(tg.to_string());
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::int("Desired"),
            Column::int("Current"),
            Column::int("Ready"),
            Column::int("Up-to-date"),
            Column::int("Available"),
            Column::text("Node Selector"),
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
            .cell("Desired", int(&status["desiredNumberScheduled"]))
            .cell("Current", int(&status["currentNumberScheduled"]))
            .cell("Ready", int(&status["numberReady"]))
            .cell("Up-to-date", int(&status["updatedNumberScheduled"]))
            .cell("Available", int(&status["numberAvailable"]))
            .cell(
                "Node Selector",
                labels(&spec["template"]["spec"]["nodeSelector"]),
            )
            .containers(&spec["template"]["spec"])
            .cell("Selector", selector(&spec["selector"]))
    }
}
