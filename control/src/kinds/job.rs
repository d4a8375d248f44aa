//! Jobs: completions and parallelism, the generated selector, what may
//! change once created.

use k8s_openapi::api::batch::v1 as batch;
use serde_json::{Map, Value, json};

use super::{ALL, Kind};
use crate::resources::defaults::{set_missing, spec, template};
use crate::resources::fields::Field;
use crate::resources::table::{
    AGE, CONTAINERS, Column, IMAGES, NAME, Row, SELECTOR, condition_true, human_duration, int,
    selector, since,
};
use crate::resources::validation::Errors;
use crate::resources::validation::workloads::{
    job_spec as valid_job_spec, selector_matches_template,
};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct Job;

impl Kind for Job {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<batch::Job>(self, &[], ALL, &[Status])]
    }

    fn defaults(&self, object: &mut Value) {
        let template_labels = object.pointer("/spec/template/metadata/labels").cloned();
        let spec = spec(object);
        job_spec(spec);
        template(spec);
        if let (Some(labels), Some(meta)) = (template_labels, object["metadata"].as_object_mut())
            && meta
                .get("labels")
                .is_none_or(|l| l.as_object().is_none_or(Map::is_empty))
        {
            meta.insert("labels".into(), labels);
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let spec = &object["spec"];
        valid_job_spec(spec, "spec", errs);
        selector_matches_template(spec, "job", errs);
        if let Some(old) = old {
            for (pointer, path) in [
                ("/spec/selector", "spec.selector"),
                ("/spec/template", "spec.template"),
                ("/spec/completionMode", "spec.completionMode"),
                ("/spec/podFailurePolicy", "spec.podFailurePolicy"),
            ] {
                errs.immutable(object, old, pointer, path);
            }
            if spec["completionMode"] != "Indexed" {
                errs.immutable(object, old, "/spec/completions", "spec.completions");
            }
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn on_create(&self, object: &mut Value) {
        job_selector(object);
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[Field::new("status.successful", "/status/succeeded").or("0")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Status"),
            Column::text("Completions"),
            Column::text("Duration"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    fn row(&self, o: &Value, now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let st = if condition_true(o, "Complete") {
            "Complete"
        } else if condition_true(o, "Failed") {
            "Failed"
        } else if o["metadata"].get("deletionTimestamp").is_some() {
            "Terminating"
        } else if condition_true(o, "Suspended") {
            "Suspended"
        } else if condition_true(o, "FailureTarget") {
            "FailureTarget"
        } else if condition_true(o, "SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let succeeded = int(&status["succeeded"]);
        let completions = match spec["completions"].as_i64() {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int(&spec["parallelism"]) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let duration = match (
            status["startTime"].as_str(),
            status["completionTime"].as_str(),
        ) {
            (None, _) => String::new(),
            (Some(_), None) => since(&status["startTime"], now),
            (Some(start), Some(end)) => match (
                start.parse::<jiff::Timestamp>(),
                end.parse::<jiff::Timestamp>(),
            ) {
                (Ok(s), Ok(e)) => human_duration(e.duration_since(s).as_secs()),
                _ => String::new(),
            },
        };
        Row::new()
            .cell("Status", st)
            .cell("Completions", completions)
            .cell("Duration", duration)
            .containers(&spec["template"]["spec"])
            .cell("Selector", selector(&spec["selector"]))
    }
}

/// `JobSpec` defaults.
fn job_spec(spec: &mut Value) {
    let completions = spec.get("completions").is_some_and(|v| !v.is_null());
    let parallelism = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !completions && !parallelism {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    } else {
        set_missing(spec, "parallelism", json!(1));
    }
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_missing(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_missing(spec, "completionMode", json!("NonIndexed"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "manualSelector", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_missing(spec, "podReplacementPolicy", json!(replacement));
}

/// A Job's generated selector and the labels it selects (unless `manualSelector`).
fn job_selector(object: &mut Value) {
    if object["spec"]["manualSelector"] == true {
        return;
    }
    let uid = object["metadata"]["uid"].clone();
    let name = object["metadata"]["name"].clone();
    let labels = &mut object["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    let labels = labels.as_object_mut().expect("labels map");
    for (key, value) in [
        ("controller-uid", &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
        ("job-name", &name),
        ("batch.kubernetes.io/job-name", &name),
    ] {
        labels.entry(key).or_insert_with(|| value.clone());
    }
    object["spec"]["selector"] =
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}
