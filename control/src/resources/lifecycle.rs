//! What the server does to an object across its life, for every kind:
//! initial status, `generation`, the status and subresource-owned fields
//! a main write may not change, graceful deletion and finalizers. Each
//! kind's own part (`Kind::on_create`, `on_update`, `grace_period`, ...)
//! is in its module under `crate::kinds`.

use serde_json::{Value, json};

use super::{ResourceType, Subresource};

/// Prepares a new object: resets status, sets generation and server-owned fields.
pub fn prepare_create(rt: &ResourceType, object: &mut Value) {
    if rt.rules.tracks_generation() {
        object["metadata"]["generation"] = json!(1);
    }
    if rt.has(Subresource::Status)
        && let Some(status) = rt.rules.initial_status(object)
    {
        object["status"] = status;
    }
    rt.rules.on_create(object);
}

/// Carries server-owned state from `old` into an update and bumps
/// `generation` when the spec changed.
/// `status_only` is a write to the status subresource, which never bumps
/// the generation.
pub fn prepare_update(rt: &ResourceType, new: &mut Value, old: &Value, status_only: bool) {
    if rt.rules.tracks_generation() && !status_only {
        let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let generation = if rt.rules.spec_changed(new, old) {
            old_gen + 1
        } else {
            old_gen
        };
        new["metadata"]["generation"] = json!(generation);
    }
    rt.rules.on_update(new, old);
}

/// Keeps what a write to the main resource may not change: the status
/// (kinds with a status subresource) and what the kind keeps for a
/// subresource of its own (a namespace's finalizers, through `/finalize`).
pub fn preserve_on_main_update(rt: &ResourceType, new: &mut Value, old: &Value) {
    if rt.has(Subresource::Status) {
        copy_field(old, new, "status");
    }
    rt.rules.keep_on_main_update(new, old);
}

/// The grace period a delete gets (0: at once).
pub fn grace_period(rt: &ResourceType, object: &Value, requested: Option<i64>) -> i64 {
    rt.rules.grace_period(object, requested)
}

/// Whether anything still holds the object back from being removed.
pub fn has_finalizers(object: &Value) -> bool {
    let listed = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    listed("/metadata/finalizers") || listed("/spec/finalizers") && object["kind"] == "Namespace"
}

/// An object being deleted whose finalizers and grace period are all done.
pub fn deletion_complete(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
        && !has_finalizers(object)
        && object["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
}

/// Marks the start of a deletion that has to wait (finalizers, grace period).
pub fn on_deletion_start(rt: &ResourceType, object: &mut Value) {
    rt.rules.on_deletion_start(object);
    if rt.rules.tracks_generation()
        && let Some(g) = object["metadata"]["generation"].as_i64()
    {
        object["metadata"]["generation"] = json!(g + 1);
    }
}

/// Sets `to[field]` to `from[field]`, removing it when `from` has none
/// (nothing when `to` is not an object).
pub fn copy_field(from: &Value, to: &mut Value, field: &str) {
    let Some(to) = to.as_object_mut() else { return };
    match from.get(field) {
        Some(v) => to.insert(field.into(), v.clone()),
        None => to.remove(field),
    };
}
