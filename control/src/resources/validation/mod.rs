//! Validation of objects on create and update, reporting field errors the
//! way Kubernetes does (path, kind of error, offending value).

mod meta;
pub mod names;
mod other;
mod pod;
mod service;
mod workloads;

use serde_json::Value;

use super::ResourceType;
use crate::error::FieldError;

/// Errors collected while validating one object.
#[derive(Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// One `Invalid` error per message of a name check.
    fn name(&mut self, field: &str, value: &str, messages: Vec<String>) {
        for m in messages {
            self.push(FieldError::invalid(field, &Value::from(value), m));
        }
    }

    /// Requires an integer field to be `>= 0` when present.
    fn non_negative(&mut self, object: &Value, field: &str, path: &str) {
        if let Some(n) = object.get(field).and_then(Value::as_i64)
            && n < 0
        {
            self.push(FieldError::invalid(
                path,
                &Value::from(n),
                "must be greater than or equal to 0",
            ));
        }
    }

    /// `field` must be one of `allowed` when present.
    fn one_of(&mut self, object: &Value, field: &str, path: &str, allowed: &[&str]) {
        if let Some(v) = object.get(field).filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            self.push(FieldError::not_supported(path, v, allowed));
        }
    }

    /// `new[field]` must equal `old[field]`.
    fn immutable(&mut self, new: &Value, old: &Value, pointer: &str, path: &str) {
        let n = new.pointer(pointer);
        if n != old.pointer(pointer) {
            self.push(FieldError::immutable(path, n.unwrap_or(&Value::Null)));
        }
    }
}

/// Validates `object` (an update when `old` is given).
pub fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errors::default();
    meta::object_meta(rt, object, old, &mut errs);
    match (rt.group, rt.kind) {
        ("", "Pod") => pod::pod(object, old, &mut errs),
        ("", "Service") => service::service(object, old, &mut errs),
        ("", "ConfigMap") => other::config_map(object, old, &mut errs),
        ("", "Secret") => other::secret(object, old, &mut errs),
        ("", "Namespace") => other::namespace(object, &mut errs),
        ("", "PersistentVolumeClaim") => other::pvc(object, old, &mut errs),
        ("apps", "Deployment") | ("apps", "ReplicaSet") => {
            workloads::replicated(rt.kind, object, old, &mut errs)
        }
        ("apps", "StatefulSet") => workloads::stateful_set(object, old, &mut errs),
        ("apps", "DaemonSet") => workloads::daemon_set(object, old, &mut errs),
        ("batch", "Job") => workloads::job(object, old, &mut errs),
        ("batch", "CronJob") => workloads::cron_job(object, &mut errs),
        ("autoscaling", "HorizontalPodAutoscaler") => other::hpa(object, &mut errs),
        ("networking.k8s.io", "Ingress") => other::ingress(object, &mut errs),
        _ => {}
    }
    errs.0
}

/// A valid cron schedule (five fields or a `@descriptor`), as CronJob needs.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    workloads::check_schedule(schedule)
}
