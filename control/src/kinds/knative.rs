//! Knative Serving's Service and Revision, as Peapod serves them for
//! scale-to-zero functions (their types are `crate::resources::knative`).

use peapod_common::knative::MAX_REQUEST_TIMEOUT_SECONDS;
use serde_json::Value;

use super::Kind;
use crate::error::FieldError;
use crate::resources::knative::{KnativeService, Revision as KnativeRevision};
use crate::resources::table::{Column, NAME, Row, first_of_type, int, or};
use crate::resources::validation::Errors;
use crate::resources::{ResourceType, Subresource::*, served};

/// Knative's categories for its kinds.
const KNATIVE: &[&str] = &["all", "knative", "serving"];

/// The Ready condition's status and reason.
fn ready(o: &Value) -> (String, String) {
    let ready = first_of_type(&o["status"]["conditions"], "Ready");
    (
        ready.map_or(String::new(), |c| or(&c["status"], "")),
        ready.map_or(String::new(), |c| or(&c["reason"], "")),
    )
}

/// Knative's bounds on a revision's serving settings, at `path`.
fn revision_spec(spec: &Value, path: &str, errs: &mut Errors) {
    for (field, max) in [
        ("containerConcurrency", 1000),
        ("timeoutSeconds", MAX_REQUEST_TIMEOUT_SECONDS as i64),
    ] {
        let Some(v) = spec.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        if !v.as_i64().is_some_and(|n| (0..=max).contains(&n)) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v,
                format!("must be between 0 and {max}"),
            ));
        }
    }
}

#[derive(Debug)]
pub struct Service;

impl Kind for Service {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<KnativeService>(
            self,
            &["kservice", "ksvc"],
            KNATIVE,
            &[Status],
        )]
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        revision_spec(
            &object["spec"]["template"]["spec"],
            "spec.template.spec",
            errs,
        );
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("URL"),
            Column::text("LatestCreated"),
            Column::text("LatestReady"),
            Column::text("Ready"),
            Column::text("Reason"),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let status = &o["status"];
        let (state, reason) = ready(o);
        Row::new()
            .cell("URL", or(&status["url"], ""))
            .cell(
                "LatestCreated",
                or(&status["latestCreatedRevisionName"], ""),
            )
            .cell("LatestReady", or(&status["latestReadyRevisionName"], ""))
            .cell("Ready", state)
            .cell("Reason", reason)
    }
}

#[derive(Debug)]
pub struct Revision;

impl Kind for Revision {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<KnativeRevision>(
            self,
            &["rev"],
            KNATIVE,
            &[Status],
        )]
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        revision_spec(&object["spec"], "spec", errs);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Config Name"),
            Column::text("Generation"),
            Column::text("Ready"),
            Column::text("Reason"),
            Column::text("Actual Replicas"),
            Column::text("Desired Replicas"),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let labels = &o["metadata"]["labels"];
        let (state, reason) = ready(o);
        Row::new()
            .cell(
                "Config Name",
                or(&labels["serving.knative.dev/configuration"], ""),
            )
            .cell(
                "Generation",
                or(&labels["serving.knative.dev/configurationGeneration"], ""),
            )
            .cell("Ready", state)
            .cell("Reason", reason)
            .cell("Actual Replicas", int(&o["status"]["actualReplicas"]))
            .cell("Desired Replicas", int(&o["status"]["desiredReplicas"]))
    }
}
