//! Deployments: rolling update strategy, generation counting annotations
//! (the revision), annotations through `/status`.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{entry, set_missing, spec, template};
use crate::resources::lifecycle::copy_field;
use crate::resources::table::{
    AGE, CONTAINERS, Column, IMAGES, NAME, Row, SELECTOR, int, selector_string,
};
use crate::resources::validation::Errors;
use crate::resources::validation::workloads::{percent_or_int, replicated};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct Deployment;

impl Kind for Deployment {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<apps::Deployment>(
            self,
            &["deploy"],
            ALL,
            &[Status, Scale],
        )]
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        set_missing(spec, "replicas", json!(1));
        let strategy = entry(spec, "strategy", json!({}));
        set_missing(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let ru = entry(strategy, "rollingUpdate", json!({}));
            set_missing(ru, "maxUnavailable", json!("25%"));
            set_missing(ru, "maxSurge", json!("25%"));
        }
        set_missing(spec, "revisionHistoryLimit", json!(10));
        set_missing(spec, "progressDeadlineSeconds", json!(600));
        template(spec);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        replicated(object, old, errs);
        strategy(&object["spec"], errs);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// The controller records the revision in an annotation; a change of
    /// annotations is a new generation too.
    fn spec_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
            || new["metadata"].get("annotations") != old["metadata"].get("annotations")
    }

    /// The controller records the revision through `/status` without
    /// bumping the generation, as Kubernetes allows.
    fn on_status_write(&self, request: &Value, merged: &mut Value) {
        if let Some(meta) = merged.get_mut("metadata") {
            copy_field(&request["metadata"], meta, "annotations");
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Ready"),
            Column::text("Up-to-date"),
            Column::text("Available"),
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
            .cell(
                "Ready",
                format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                ),
            )
            .cell("Up-to-date", int(&status["updatedReplicas"]))
            .cell("Available", int(&status["availableReplicas"]))
            .containers(&spec["template"]["spec"])
            .cell("Selector", selector_string(&spec["selector"]))
    }
}

fn strategy(spec: &Value, errs: &mut Errors) {
    let strategy = &spec["strategy"];
    let ty = strategy["type"].as_str().unwrap_or("RollingUpdate");
    match ty {
        "Recreate" if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) => {
            errs.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        "Recreate" => {}
        "RollingUpdate" => {
            let ru = &strategy["rollingUpdate"];
            let unavailable = ru.get("maxUnavailable").and_then(|v| {
                percent_or_int(v, "spec.strategy.rollingUpdate.maxUnavailable", errs)
            });
            let surge = ru
                .get("maxSurge")
                .and_then(|v| percent_or_int(v, "spec.strategy.rollingUpdate.maxSurge", errs));
            if unavailable == Some(0.0) && surge == Some(0.0) {
                errs.push(FieldError::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &ru["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        _ => errs.push(FieldError::not_supported(
            "spec.strategy",
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let (Some(p), Some(m)) = (
        spec["progressDeadlineSeconds"].as_i64(),
        spec["minReadySeconds"].as_i64(),
    ) && p <= m
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            &json!(p),
            "must be greater than minReadySeconds",
        ));
    }
}
