//! Workload controllers' specs: selectors that match their templates,
//! strategies, counts, and what may change after creation.

use std::str::FromStr;

use serde_json::{Value, json};

use super::{Errors, pod};
use crate::error::FieldError;
use crate::selector::LabelSelector;
use crate::selector::labels::labels_of;

/// `spec.selector` is present, non-empty and selects the template's labels.
fn selector_matches_template(spec: &Value, kind_word: &str, errs: &mut Errors) {
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(s)
            if s.as_object().is_some_and(|m| {
                m.values().all(|v| {
                    v.is_null()
                        || v.as_object().is_some_and(|o| o.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty())
                })
            }) =>
        {
            errs.push(FieldError::invalid(
                "spec.selector",
                s,
                format!("empty selector is invalid for {kind_word}"),
            ));
            return;
        }
        Some(_) => {}
    }
    match LabelSelector::from_k8s(selector) {
        Err(e) => errs.push(FieldError::invalid(
            "spec.selector",
            selector.unwrap_or(&Value::Null),
            e,
        )),
        Ok(sel) => {
            let template = json!({"metadata": {"labels": template_labels}});
            if !sel.matches(&labels_of(&template)) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    &template_labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

fn template_restart_always(spec: &Value, kind: &str, errs: &mut Errors) {
    let policy = &spec["template"]["spec"]["restartPolicy"];
    if policy.as_str().is_some_and(|p| p != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if spec["template"]["spec"]
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn percent_or_int(v: &Value, path: &str, errs: &mut Errors) -> Option<f64> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    "must be greater than or equal to 0",
                ));
            }
            Some(n as f64)
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<u32>().ok()) {
            Some(p) if p > 100 => {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    "must not be greater than 100%",
                ));
                None
            }
            Some(p) => Some(p as f64),
            None => {
                errs.push(FieldError::invalid(path, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                None
            }
        },
        _ => None,
    }
}

/// Deployments and ReplicaSets.
pub fn replicated(kind: &str, object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    for f in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        errs.non_negative(spec, f, &format!("spec.{f}"));
    }
    selector_matches_template(spec, "deployment", errs);
    pod::template(&spec["template"], "spec.template", &[], errs);
    template_restart_always(spec, "ReplicaSet", errs);
    if kind == "Deployment" {
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
    if let Some(old) = old {
        errs.immutable(object, old, "/spec/selector", "spec.selector");
    }
}

pub fn stateful_set(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    for f in ["replicas", "minReadySeconds"] {
        errs.non_negative(spec, f, &format!("spec.{f}"));
    }
    if let Some(p) = spec["podManagementPolicy"].as_str()
        && !matches!(p, "OrderedReady" | "Parallel")
    {
        errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            &json!(p),
            "must be 'OrderedReady' or 'Parallel'",
        ));
    }
    if let Some(t) = spec["updateStrategy"]["type"].as_str()
        && !matches!(t, "RollingUpdate" | "OnDelete")
    {
        errs.push(FieldError::invalid(
            "spec.updateStrategy",
            &spec["updateStrategy"],
            "must be 'RollingUpdate' or 'OnDelete'",
        ));
    }
    selector_matches_template(spec, "statefulset", errs);
    let claims: Vec<&str> = spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    pod::template(&spec["template"], "spec.template", &claims, errs);
    template_restart_always(spec, "StatefulSet", errs);
    if let Some(old) = old {
        let mut a = spec.clone();
        let mut b = old["spec"].clone();
        for v in [&mut a, &mut b] {
            if let Some(m) = v.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "revisionHistoryLimit",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
        }
        if a != b {
            errs.push(FieldError::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
    }
}

pub fn daemon_set(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    selector_matches_template(spec, "daemonset", errs);
    pod::template(&spec["template"], "spec.template", &[], errs);
    template_restart_always(spec, "DaemonSet", errs);
    errs.one_of(
        &spec["updateStrategy"],
        "type",
        "spec.updateStrategy",
        &["RollingUpdate", "OnDelete"],
    );
    if let Some(old) = old {
        errs.immutable(object, old, "/spec/selector", "spec.selector");
    }
}

fn job_spec(spec: &Value, path: &str, errs: &mut Errors) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        errs.non_negative(spec, f, &format!("{path}.{f}"));
    }
    let policy = &spec["template"]["spec"]["restartPolicy"];
    match policy.as_str() {
        Some("OnFailure") | Some("Never") => {}
        Some("Always") | None => errs.push(FieldError::required(
            format!("{path}.template.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        )),
        Some(_) => errs.push(FieldError::not_supported(
            format!("{path}.template.spec.restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        )),
    }
    errs.one_of(
        spec,
        "completionMode",
        &format!("{path}.completionMode"),
        &["NonIndexed", "Indexed"],
    );
    if spec["completionMode"] == "Indexed" && spec["completions"].is_null() {
        errs.push(FieldError::required(
            format!("{path}.completions"),
            "when completion mode is Indexed",
        ));
    }
    pod::template(&spec["template"], &format!("{path}.template"), &[], errs);
}

pub fn job(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    job_spec(spec, "spec", errs);
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

pub fn cron_job(object: &Value, errs: &mut Errors) {
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

pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.contains("TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if !s.starts_with('@') {
        let n = s.split_whitespace().count();
        if n != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {n}: [{}]",
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    croner::Cron::from_str(s)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
