//! Delete: preconditions, graceful deletion, finalizers and the
//! propagation policy the garbage collector acts on.

use serde_json::{Value, json};

use super::{Objects, Target, store_error};
use crate::error::{ApiError, ApiResult};
use crate::resources::lifecycle;
use crate::store::{Object, revision_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Propagation> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; this was its last state.
    Now(Object),
    /// The object is being deleted (finalizers or a grace period remain).
    Pending(Object),
}

impl Deleted {
    pub fn object(&self) -> &Object {
        match self {
            Deleted::Now(o) | Deleted::Pending(o) => o,
        }
    }
}

impl Objects {
    pub async fn delete(&self, t: Target<'_>, opts: &DeleteOptions) -> ApiResult<Deleted> {
        for _ in 0..16 {
            let current = self.get(t).await?;
            check_preconditions(t, &current, opts)?;
            let expected = revision_of(&current);
            let mut new = (*current).clone();
            set_propagation_finalizers(&mut new, opts.propagation);
            let grace = lifecycle::grace_period(t.rt, &current, opts.grace_period_seconds);
            let deleting = current.pointer("/metadata/deletionTimestamp").is_some();

            let immediate = grace == 0 && !lifecycle::has_finalizers(&new);
            let result = if immediate {
                if opts.dry_run {
                    return Ok(Deleted::Now(current));
                }
                self.store
                    .delete(&t.key(), Some(expected))
                    .await
                    .map(Deleted::Now)
            } else {
                let meta = super::create::metadata_mut(&mut new);
                let pending_grace = meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                // A second delete may only shorten the grace period.
                if !deleting || pending_grace.is_some_and(|g| grace < g) {
                    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                    meta.insert(
                        "deletionTimestamp".into(),
                        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if !deleting {
                    lifecycle::on_deletion_start(t.rt, &mut new);
                }
                if new == *current || opts.dry_run {
                    return Ok(Deleted::Pending(if opts.dry_run {
                        new.into()
                    } else {
                        current
                    }));
                }
                self.store
                    .update(&t.key(), new, Some(expected))
                    .await
                    .map(Deleted::Pending)
            };
            match result {
                Err(crate::store::StoreError::Conflict { .. }) => continue,
                other => return other.map_err(|e| store_error(t.rt, t.name, e)),
            }
        }
        Err(ApiError::modified(t.rt, t.name))
    }
}

fn check_preconditions(t: Target<'_>, current: &Value, opts: &DeleteOptions) -> ApiResult<()> {
    let actual_uid = current["metadata"]["uid"].as_str().unwrap_or_default();
    if let Some(uid) = &opts.precondition_uid
        && uid != actual_uid
    {
        return Err(ApiError::conflict(
            t.rt,
            t.name,
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual_uid}"
            ),
        ));
    }
    let actual_rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if let Some(rv) = &opts.precondition_resource_version
        && rv != actual_rv
    {
        return Err(ApiError::conflict(
            t.rt,
            t.name,
            format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual_rv}"
            ),
        ));
    }
    Ok(())
}

/// Records the propagation policy as the finalizer the garbage collector
/// honours (`orphan`, `foregroundDeletion`); background needs none.
fn set_propagation_finalizers(object: &mut Value, propagation: Option<Propagation>) {
    let Some(policy) = propagation else { return };
    let meta = super::create::metadata_mut(object);
    let mut finalizers: Vec<Value> = meta
        .get("finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    finalizers.retain(|f| f != ORPHAN_FINALIZER && f != FOREGROUND_FINALIZER);
    match policy {
        Propagation::Orphan => finalizers.push(json!(ORPHAN_FINALIZER)),
        Propagation::Foreground => finalizers.push(json!(FOREGROUND_FINALIZER)),
        Propagation::Background => {}
    }
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
}
