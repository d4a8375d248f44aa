//! Deployment controller: one ReplicaSet per pod template revision
//! (`<deployment>-<pod-template-hash>`), rolled with RollingUpdate
//! (maxSurge/maxUnavailable) or Recreate, revision history, pause, and the
//! status and conditions `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Context;
use super::common::{
    controller_of, delete, list_selected, now, owner_reference, same_template, template_hash,
    time_now,
};
use super::runner::{self, Error};
use peapod_common::events::{Kind, reference};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";

pub async fn run(ctx: Arc<Context>) {
    runner::run_owning::<Deployment, ReplicaSet, _, _>(ctx, "deployment", reconcile).await;
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Resolves an int-or-percent against `total`, rounding up or down.
fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = v.cloned().unwrap_or(IntOrString::String(default.into()));
    match v {
        IntOrString::Int(n) => n,
        IntOrString::String(s) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = p * f64::from(total) / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) in pods.
fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref().expect("deployments have a spec");
    let desired = spec.replicas.unwrap_or(1);
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), desired, true, "25%");
    let mut unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

struct Rollout<'a> {
    ctx: &'a Context,
    d: &'a Deployment,
    api: Api<ReplicaSet>,
}

impl Rollout<'_> {
    async fn scale(&self, rs: &mut ReplicaSet, to: i32) -> Result<(), Error> {
        let from = replicas(rs);
        if from == to {
            return Ok(());
        }
        let (surge, _) = surge_and_unavailable(self.d);
        let desired = self.d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let patch = json!({
            "metadata": {"annotations": {DESIRED: desired.to_string(), MAX: (desired + surge).to_string()}},
            "spec": {"replicas": to},
        });
        *rs = self
            .api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let direction = if to > from { "up" } else { "down" };
        let msg = format!(
            "Scaled {direction} replica set {} to {to} from {from}",
            rs.name_any()
        );
        self.ctx
            .recorder
            .publish(&reference(self.d), Kind::Normal, "ScalingReplicaSet", &msg);
        Ok(())
    }

    /// Creates the ReplicaSet for the current template.
    async fn create_new(&self, revision: i64, replicas: i32) -> Result<ReplicaSet, Error> {
        let spec = self.d.spec.as_ref().expect("spec");
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert("pod-template-hash".into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert("pod-template-hash".into(), hash.clone());
        let (surge, _) = surge_and_unavailable(self.d);
        let desired = spec.replicas.unwrap_or(1);
        let name = format!("{}-{hash}", self.d.name_any());
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert("pod-template-hash".into(), hash);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: Some(labels),
                annotations: Some(
                    [
                        (REVISION.to_string(), revision.to_string()),
                        (DESIRED.to_string(), desired.to_string()),
                        (MAX.to_string(), (desired + surge).to_string()),
                    ]
                    .into(),
                ),
                owner_references: Some(vec![owner_reference(self.d)]),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if replicas > 0 {
                    let msg = format!("Scaled up replica set {name} to {replicas}");
                    self.ctx.recorder.publish(
                        &reference(self.d),
                        Kind::Normal,
                        "ScalingReplicaSet",
                        &msg,
                    );
                }
                Ok(created)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A ReplicaSet of that name with another template: a hash
                // collision. Count it so that the next hash differs.
                let count = collisions.unwrap_or(0) + 1;
                let deployments: Api<Deployment> = Api::namespaced(
                    self.ctx.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                );
                deployments
                    .patch_status(
                        &self.d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                Err(Error::Other(format!("hash collision on {name}")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = list_selected(&api, &spec.selector).await?;
    let mut owned = Vec::new();
    for rs in listed.items {
        match controller_of(&rs.metadata) {
            Some(r) if r.uid == uid => owned.push(rs),
            Some(_) => {}
            None if rs.metadata.deletion_timestamp.is_none() => {
                let patch = json!({"metadata": {"uid": rs.uid(), "ownerReferences": [owner_reference(d.as_ref())]}});
                if let Ok(rs) = api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                {
                    owned.push(rs);
                }
            }
            None => {}
        }
    }
    owned.sort_by_key(|rs| {
        (
            revision(rs),
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let rollout = Rollout {
        ctx: &ctx,
        d: &d,
        api: api.clone(),
    };
    let desired = spec.replicas.unwrap_or(1);
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let new_index = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| same_template(t, &spec.template))
    });
    let mut new_rs = new_index.map(|i| owned.remove(i));
    let mut old = owned;
    let paused = spec.paused == Some(true);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let mut created_new = false;

    if !paused {
        // A template rolled back to becomes the newest revision again.
        if let Some(rs) = new_rs.as_mut()
            && revision(rs) < max_revision
        {
            let patch =
                json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}});
            *rs = api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        if recreate {
            // Everything old goes first, then the new template comes up.
            for rs in old.iter_mut() {
                rollout.scale(rs, 0).await?;
            }
            let old_running = old
                .iter()
                .any(|rs| rs.status.as_ref().map_or(0, |s| s.replicas) > 0);
            if old_running {
                sync_status(&ctx, &d, new_rs.as_ref(), &old, false).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            match new_rs.as_mut() {
                Some(rs) => rollout.scale(rs, desired).await?,
                None => {
                    new_rs = Some(rollout.create_new(max_revision + 1, desired).await?);
                    created_new = true;
                }
            }
        } else {
            let (surge, unavailable) = surge_and_unavailable(&d);
            if new_rs.is_none() {
                // Start with what the surge allows on top of what already runs.
                let current: i32 = old.iter().map(replicas).sum();
                let start = (desired + surge - current).clamp(0, desired);
                new_rs = Some(rollout.create_new(max_revision + 1, start).await?);
                created_new = true;
            }
            let new = new_rs.as_mut().expect("created above");
            // Scale the new ReplicaSet up within the surge.
            let total: i32 = old.iter().map(replicas).sum::<i32>() + replicas(new);
            if replicas(new) != desired {
                let target = if replicas(new) > desired {
                    desired
                } else {
                    let room = (desired + surge - total).max(0);
                    replicas(new) + room.min(desired - replicas(new))
                };
                rollout.scale(new, target).await?;
            }
            // Scale old ones down within the unavailability budget.
            let min_available = desired - unavailable;
            let total: i32 = old.iter().map(replicas).sum::<i32>() + replicas(new);
            let new_unavailable = (replicas(new) - available(new)).max(0);
            let mut budget = total - min_available - new_unavailable;
            // First the old pods that are not available anyway.
            for rs in old.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let unhealthy = (replicas(rs) - available(rs)).max(0).min(budget);
                if unhealthy > 0 {
                    let to = replicas(rs) - unhealthy;
                    rollout.scale(rs, to).await?;
                    budget -= unhealthy;
                }
            }
            let available_total: i32 = old.iter().map(available).sum::<i32>() + available(new);
            let mut budget = available_total - min_available;
            for rs in old.iter_mut() {
                if budget <= 0 {
                    break;
                }
                let down = replicas(rs).min(budget);
                if down > 0 {
                    let to = replicas(rs) - down;
                    rollout.scale(rs, to).await?;
                    budget -= down;
                }
            }
        }
        cleanup_history(&d, &api, &old).await?;
    } else if let Some(rs) = new_rs.as_mut() {
        rollout.scale(rs, desired).await?;
    }

    let complete = sync_status(&ctx, &d, new_rs.as_ref(), &old, created_new).await?;
    if complete {
        Ok(Action::requeue(Duration::from_secs(300)))
    } else {
        Ok(Action::requeue(Duration::from_secs(2)))
    }
}

/// Deletes scaled-down old ReplicaSets beyond `revisionHistoryLimit`.
async fn cleanup_history(
    d: &Deployment,
    api: &Api<ReplicaSet>,
    old: &[ReplicaSet],
) -> Result<(), Error> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| replicas(rs) == 0 && rs.status.as_ref().map_or(0, |s| s.replicas) == 0)
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    for rs in &idle[..idle.len() - limit] {
        delete(api, &rs.name_any(), &DeleteParams::default()).await?;
    }
    Ok(())
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    previous: Option<&DeploymentCondition>,
    progressed: bool,
) -> DeploymentCondition {
    let now = time_now();
    let same = previous.is_some_and(|p| p.status == status && p.reason.as_deref() == Some(reason));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: if same {
            previous.and_then(|p| p.last_transition_time.clone())
        } else {
            Some(now.clone())
        },
        last_update_time: if same && !progressed {
            previous.and_then(|p| p.last_update_time.clone())
        } else {
            Some(now)
        },
    }
}

/// Writes the deployment's status; returns whether the rollout is complete.
async fn sync_status(
    ctx: &Context,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    created_new: bool,
) -> Result<bool, Error> {
    let spec = d.spec.as_ref().expect("spec");
    let desired = spec.replicas.unwrap_or(1);
    let all: Vec<&ReplicaSet> = old.iter().chain(new_rs).collect();
    let status_of =
        |rs: &ReplicaSet, f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
            rs.status.as_ref().and_then(f).unwrap_or(0)
        };
    let replicas_now: i32 = all
        .iter()
        .map(|rs| status_of(rs, |s| Some(s.replicas)))
        .sum();
    let updated = new_rs.map_or(0, |rs| status_of(rs, |s| Some(s.replicas)));
    let ready: i32 = all
        .iter()
        .map(|rs| status_of(rs, |s| s.ready_replicas))
        .sum();
    let available_now: i32 = all
        .iter()
        .map(|rs| status_of(rs, |s| s.available_replicas))
        .sum();
    let total_spec: i32 = all.iter().map(|rs| replicas(rs)).sum();
    let (_, max_unavailable) = surge_and_unavailable(d);
    let previous = d.status.clone().unwrap_or_default();
    let prev_cond = |t: &str| {
        previous
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == t).cloned())
    };
    let complete = updated == desired && replicas_now == desired && available_now == desired;
    let progressed = created_new
        || previous.replicas != Some(replicas_now)
        || previous.updated_replicas != Some(updated)
        || previous.ready_replicas != Some(ready)
        || previous.available_replicas != Some(available_now);
    let available_cond = if available_now >= desired - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            prev_cond("Available").as_ref(),
            false,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            prev_cond("Available").as_ref(),
            false,
        )
    };
    let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let prev_progress = prev_cond("Progressing");
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let progressing = if spec.paused == Some(true) {
        condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            prev_progress.as_ref(),
            false,
        )
    } else if complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet {rs_name:?} has successfully progressed."),
            prev_progress.as_ref(),
            false,
        )
    } else if created_new {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set {rs_name:?}"),
            prev_progress.as_ref(),
            true,
        )
    } else {
        let stalled_since = prev_progress
            .as_ref()
            .and_then(|c| c.last_update_time.as_ref())
            .map_or(now().as_second(), |t| t.0.as_second());
        let timed_out = !progressed && now().as_second() - stalled_since > i64::from(deadline);
        if timed_out
            || prev_progress.as_ref().and_then(|c| c.reason.as_deref())
                == Some("ProgressDeadlineExceeded")
                && !progressed
        {
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet {rs_name:?} has timed out progressing."),
                prev_progress.as_ref(),
                false,
            )
        } else {
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet {rs_name:?} is progressing."),
                prev_progress.as_ref(),
                progressed,
            )
        }
    };
    let status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": replicas_now,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available_now,
        "unavailableReplicas": (total_spec.max(desired) - available_now).max(0),
        "conditions": [available_cond, progressing],
        "collisionCount": previous.collision_count,
    });
    let mut annotations = serde_json::Map::new();
    if let Some(rs) = new_rs {
        annotations.insert(REVISION.into(), json!(revision(rs).to_string()));
    }
    let deployments: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let old_status = serde_json::to_value(&d.status).unwrap_or_default();
    let unchanged = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .all(|k| old_status.get(*k).unwrap_or(&json!(0)) == status.get(*k).unwrap_or(&json!(0)))
        && old_status["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .zip(status["conditions"].as_array().into_iter().flatten())
                .all(|(a, b)| {
                    a["status"] == b["status"]
                        && a["reason"] == b["reason"]
                        && a["lastUpdateTime"] == b["lastUpdateTime"]
                })
                && c.len() == 2
        });
    let revision_current =
        new_rs.is_none_or(|rs| d.annotations().get(REVISION) == Some(&revision(rs).to_string()));
    if !unchanged || !revision_current {
        // The revision annotation goes through /status, as Kubernetes'
        // controller writes it: it must not bump the generation.
        let patch = json!({"metadata": {"annotations": annotations}, "status": status});
        deployments
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(complete)
}

#[cfg(test)]
mod tests;
