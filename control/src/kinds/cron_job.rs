//! CronJobs: the schedule, the job template, the name limit.

use k8s_openapi::api::batch::v1 as batch;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{set_missing, spec, template};
use crate::resources::table::{
    AGE, CONTAINERS, Column, IMAGES, NAME, Row, SELECTOR, or, selector, since,
};
use crate::resources::validation::Errors;
use crate::resources::validation::workloads::{check_schedule, job_spec};
use crate::resources::{ResourceType, Subresource::*, served};

/// A CronJob's name plus the 11 characters of a job's suffix fit in 63.
const NAME_LIMIT: usize = 52;

#[derive(Debug)]
pub struct CronJob;

impl Kind for CronJob {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<batch::CronJob>(self, &["cj"], ALL, &[Status])]
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        set_missing(spec, "concurrencyPolicy", json!("Allow"));
        set_missing(spec, "suspend", json!(false));
        set_missing(spec, "successfulJobsHistoryLimit", json!(3));
        set_missing(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
            template(job);
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if old.is_none() && name.len() > NAME_LIMIT {
            errs.push(FieldError::invalid(
                "metadata.name",
                &json!(name),
                format!("must be no more than {NAME_LIMIT} characters"),
            ));
        }
        let spec = &object["spec"];
        match spec["schedule"].as_str() {
            None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
            Some(s) => {
                if let Err(e) = check_schedule(s) {
                    errs.push(FieldError::invalid("spec.schedule", &json!(s), e));
                }
            }
        }
        errs.one_of(
            spec,
            "concurrencyPolicy",
            "spec.concurrencyPolicy",
            &["Allow", "Forbid", "Replace"],
        );
        for f in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            errs.non_negative(spec, f, &format!("spec.{f}"));
        }
        let job = &spec["jobTemplate"]["spec"];
        job_spec(job, "spec.jobTemplate.spec", errs);
        if job.get("selector").is_some_and(|s| !s.is_null()) {
            errs.push(FieldError::invalid(
                "spec.jobTemplate.spec.selector",
                &job["selector"],
                "`selector` will be auto-generated",
            ));
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Schedule"),
            Column::text("Timezone"),
            Column::boolean("Suspend"),
            Column::int("Active"),
            Column::text("Last Schedule"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    fn row(&self, o: &Value, now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let suspend = match spec["suspend"].as_bool() {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = if status["lastScheduleTime"].is_string() {
            since(&status["lastScheduleTime"], now)
        } else {
            "<none>".into()
        };
        Row::new()
            .cell("Schedule", or(&spec["schedule"], ""))
            .cell("Timezone", or(&spec["timeZone"], "<none>"))
            .cell("Suspend", suspend)
            .cell("Active", status["active"].as_array().map_or(0, Vec::len))
            .cell("Last Schedule", last)
            .containers(&spec["jobTemplate"]["spec"]["template"]["spec"])
            .cell(
                "Selector",
                selector(&spec["jobTemplate"]["spec"]["selector"]),
            )
    }
}
