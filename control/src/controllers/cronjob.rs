//! CronJob controller: creates a Job at each scheduled time (five-field
//! cron schedules, parsed by `croner`), honours `concurrencyPolicy`,
//! `suspend` and `startingDeadlineSeconds`, and keeps the configured number
//! of finished Jobs.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;
use super::common::{controlled_by, delete, now, owner_reference};
use super::runner::{self, Error};
use peapod_common::events::{Kind, reference};

pub async fn run(ctx: Arc<Context>) {
    runner::run_owning::<CronJob, Job, _, _>(ctx, "cronjob", reconcile).await;
}

fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Complete", "True") => Some("Complete"),
            ("Failed", "True") => Some("Failed"),
            _ => None,
        })
}

fn to_chrono(t: jiff::Timestamp) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(t.as_second(), 0)
        .single()
        .unwrap_or_default()
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let schedule = match croner::Cron::from_str(spec.schedule.trim()) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder.publish(
                &reference(cj.as_ref()),
                Kind::Warning,
                "UnparseableSchedule",
                &format!("unparseable schedule {:?}: {e}", spec.schedule),
            );
            return Ok(Action::await_change());
        }
    };
    if spec
        .time_zone
        .as_deref()
        .is_some_and(|tz| !matches!(tz, "UTC" | "Etc/UTC"))
    {
        ctx.recorder.publish(
            &reference(cj.as_ref()),
            Kind::Warning,
            "UnknownTimeZone",
            "only UTC schedules are supported",
        );
        return Ok(Action::await_change());
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &uid))
        .collect();
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));

    let now_ts = now();
    let last = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now_ts, |t| t.0);
    // The latest scheduled time in (last, now].
    let mut due = None;
    for t in schedule.iter_after(to_chrono(last)).take(1000) {
        if t > to_chrono(now_ts) {
            break;
        }
        due = Some(t);
    }
    let mut last_schedule = None;
    if let Some(t) = due
        && spec.suspend != Some(true)
    {
        let late = now_ts.as_second() - t.timestamp();
        let in_time = spec.starting_deadline_seconds.is_none_or(|d| late <= d);
        let active: Vec<&Job> = jobs.iter().filter(|j| finished(j).is_none()).collect();
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if in_time && (policy != "Forbid" || active.is_empty()) {
            if policy == "Replace" {
                for j in &active {
                    let dp = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..Default::default()
                    };
                    delete(&jobs_api, &j.name_any(), &dp).await?;
                }
            }
            let template = spec.job_template.clone();
            let tmeta = template.metadata.clone().unwrap_or_default();
            let mut annotations = tmeta.annotations.unwrap_or_default();
            annotations.insert(
                "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
            let job = Job {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{}", t.timestamp() / 60)),
                    labels: tmeta.labels,
                    annotations: Some(annotations),
                    owner_references: Some(vec![owner_reference(cj.as_ref())]),
                    ..Default::default()
                },
                spec: template.spec,
                status: None,
            };
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(j) => {
                    ctx.recorder.publish(
                        &reference(cj.as_ref()),
                        Kind::Normal,
                        "SuccessfulCreate",
                        &format!("Created job {}", j.name_any()),
                    );
                    jobs.push(j);
                }
                // Already created for this time (e.g. before a restart).
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        last_schedule = Some(t);
    }

    // Keep only the configured number of finished jobs.
    for (state, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(state)).collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.into_iter().take(excess) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            delete(&jobs_api, &j.name_any(), &dp).await?;
        }
    }

    let active_refs: Vec<_> = jobs
        .iter()
        .filter(|j| finished(j).is_none())
        .map(reference)
        .collect();
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    let mut status = json!({"active": active_refs});
    if let Some(t) = last_schedule {
        status["lastScheduleTime"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    if let Some(t) = last_success {
        status["lastSuccessfulTime"] = json!(t);
    }
    let current = serde_json::to_value(&cj.status).unwrap_or_default();
    let changed = current
        .get("active")
        .map(|a| a.as_array().map_or(0, Vec::len))
        .unwrap_or(0)
        != active_refs_len(&status)
        || status
            .get("lastScheduleTime")
            .is_some_and(|t| current.get("lastScheduleTime") != Some(t))
        || status
            .get("lastSuccessfulTime")
            .is_some_and(|t| current.get("lastSuccessfulTime") != Some(t));
    if changed {
        let cjs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        cjs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    let next = schedule
        .find_next_occurrence(&to_chrono(now()), false)
        .map(|t| (t.timestamp() - now().as_second()).max(1) as u64)
        .unwrap_or(60);
    Ok(Action::requeue(Duration::from_secs(next.min(60))))
}

fn active_refs_len(status: &serde_json::Value) -> usize {
    status["active"].as_array().map_or(0, Vec::len)
}
