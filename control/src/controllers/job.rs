//! Job controller: runs pods until `completions` succeed (at most
//! `parallelism` at a time), fails the Job past `backoffLimit` failures or
//! `activeDeadlineSeconds`, and reports `Complete` / `Failed`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::Context;
use super::common::{
    controlled_by, delete, is_pod_ready, list_selected, now, owner_reference, pod_from_template,
    time_now,
};
use super::runner::{self, Error};
use peapod_common::events::{Kind, reference};

pub async fn run(ctx: Arc<Context>) {
    runner::run_owning::<Job, Pod, _, _>(ctx, "job", reconcile).await;
}

fn has_condition(job: &Job, ty: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == ty && c.status == "True"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn condition(ty: &str, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": time_now(), "lastTransitionTime": time_now()})
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some()
        || has_condition(&job, "Complete")
        || has_condition(&job, "Failed")
    {
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = spec.selector.clone().unwrap_or_default();
    let owned: Vec<Pod> = list_selected(&pods, &selector)
        .await?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    let active: Vec<&Pod> = owned
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .collect();
    let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
    let failed = owned.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let ready = active.iter().filter(|p| is_pod_ready(p)).count();
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let start_time = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(time_now);

    // Pods created below count as active at once, as in Kubernetes' status.
    let mut created = 0;
    let mut conditions: Vec<Value> = Vec::new();
    let mut completion_time = None;
    let deadline_passed = spec
        .active_deadline_seconds
        .is_some_and(|d| now().as_second() - start_time.0.as_second() >= d);
    let done = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline_passed {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        for p in &active {
            delete(&pods, &p.name_any(), &DeleteParams::default()).await?;
        }
        conditions.push(condition("FailureTarget", reason, message));
        conditions.push(condition("Failed", reason, message));
        ctx.recorder
            .publish(&reference(job.as_ref()), Kind::Warning, reason, message);
    } else if done {
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        conditions.push(condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        completion_time = Some(time_now());
        ctx.recorder.publish(
            &reference(job.as_ref()),
            Kind::Normal,
            "Completed",
            "Job completed",
        );
    } else if spec.suspend != Some(true) {
        let remaining = completions.map_or(parallelism, |c| (c - succeeded).max(0));
        let want = parallelism.min(remaining) as usize;
        let template = spec.template.clone();
        for _ in active.len()..want {
            let pod = pod_from_template(
                &template,
                &format!("{name}-"),
                owner_reference(job.as_ref()),
            );
            match pods.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    created += 1;
                    ctx.recorder.publish(
                        &reference(job.as_ref()),
                        Kind::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name_any()),
                    );
                }
                Err(e) => {
                    ctx.recorder.publish(
                        &reference(job.as_ref()),
                        Kind::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
    }

    let mut status = json!({
        "active": if conditions.is_empty() { active.len() + created } else { 0 },
        "succeeded": succeeded,
        "failed": failed,
        "ready": ready,
        "startTime": start_time,
    });
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    if let Some(t) = completion_time {
        status["completionTime"] = json!(t);
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let current = serde_json::to_value(&job.status).unwrap_or_default();
    let changed = ["active", "succeeded", "failed", "ready", "startTime"]
        .iter()
        .any(|k| current.get(*k).unwrap_or(&json!(0)) != status.get(*k).unwrap_or(&json!(0)))
        || status.get("conditions").is_some();
    if changed {
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    match spec.active_deadline_seconds {
        Some(d) => {
            let left = d - (now().as_second() - start_time.0.as_second());
            Ok(Action::requeue(Duration::from_secs(
                left.clamp(1, 300) as u64
            )))
        }
        None => Ok(Action::requeue(Duration::from_secs(300))),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use serde_json::json;

    use super::{has_condition, phase, reconcile};
    use crate::controllers::testing::Cluster;

    fn job(completions: i32, parallelism: i32, backoff_limit: i32) -> serde_json::Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "batch"},
            "spec": {
                "completions": completions,
                "parallelism": parallelism,
                "backoffLimit": backoff_limit,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }},
            },
        })
    }

    async fn running(c: &Cluster) -> Vec<String> {
        c.list::<Pod>()
            .await
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
            .map(|p| p.name_any())
            .collect()
    }

    async fn finish(c: &Cluster, pods: &[String], how: &str) {
        for p in pods {
            c.set_status::<Pod>(p, json!({"phase": how})).await;
        }
    }

    #[tokio::test]
    async fn a_job_of_three_completions_runs_at_most_parallelism_pods_at_once_until_complete() {
        let c = Cluster::new().await;
        let j = c.create::<Job>(job(3, 2, 6)).await;
        reconcile(j, c.ctx.clone()).await.unwrap();
        let first = running(&c).await;
        assert_eq!(first.len(), 2);
        assert_eq!(
            c.get::<Job>("batch").await.status.clone().unwrap().active,
            Some(2)
        );

        finish(&c, &first, "Succeeded").await;
        reconcile(c.get("batch").await, c.ctx.clone())
            .await
            .unwrap();
        let last = running(&c).await;
        assert_eq!(last.len(), 1, "one completion is left");
        assert!(!has_condition(&*c.get::<Job>("batch").await, "Complete"));

        finish(&c, &last, "Succeeded").await;
        reconcile(c.get("batch").await, c.ctx.clone())
            .await
            .unwrap();
        let j = c.get::<Job>("batch").await;
        assert!(has_condition(&j, "Complete"), "{:?}", j.status);
        let status = j.status.clone().unwrap();
        assert_eq!(status.succeeded, Some(3));
        assert!(status.completion_time.is_some());
        assert!(running(&c).await.is_empty());
    }

    #[tokio::test]
    async fn failures_past_the_backoff_limit_fail_the_job() {
        let c = Cluster::new().await;
        let j = c.create::<Job>(job(1, 1, 1)).await;
        reconcile(j, c.ctx.clone()).await.unwrap();
        finish(&c, &running(&c).await, "Failed").await;
        reconcile(c.get("batch").await, c.ctx.clone())
            .await
            .unwrap();
        assert_eq!(
            running(&c).await.len(),
            1,
            "one failure is within the limit: a retry"
        );
        assert!(!has_condition(&*c.get::<Job>("batch").await, "Failed"));

        finish(&c, &running(&c).await, "Failed").await;
        reconcile(c.get("batch").await, c.ctx.clone())
            .await
            .unwrap();
        let j = c.get::<Job>("batch").await;
        assert!(has_condition(&j, "Failed"), "{:?}", j.status);
        let reason = j.status.as_ref().unwrap().conditions.as_ref().unwrap()[0]
            .reason
            .clone();
        assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
        assert!(running(&c).await.is_empty());
    }

    #[tokio::test]
    async fn a_suspended_job_runs_nothing() {
        let c = Cluster::new().await;
        let mut suspended = job(2, 2, 6);
        suspended["spec"]["suspend"] = json!(true);
        let j = c.create::<Job>(suspended).await;
        reconcile(j, c.ctx.clone()).await.unwrap();
        assert!(running(&c).await.is_empty());
    }
}
