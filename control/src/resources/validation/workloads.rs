//! Workload controllers' specs: selectors that match their templates,
//! strategies, counts, and what may change after creation.

use std::str::FromStr;

use serde_json::{Value, json};

use super::{Errors, pod};
use crate::error::FieldError;
use crate::selector::LabelSelector;
use crate::selector::labels::labels_of;

/// `spec.selector` is present, non-empty and selects the template's labels.
pub(crate) fn selector_matches_template(spec: &Value, kind_word: &str, errs: &mut Errors) {
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

pub(crate) fn template_restart_always(spec: &Value, kind: &str, errs: &mut Errors) {
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

pub(crate) fn percent_or_int(v: &Value, path: &str, errs: &mut Errors) -> Option<f64> {
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

/// What Deployments and ReplicaSets share: counts, a selector that
/// matches the template, the template, and a selector fixed after creation.
pub(crate) fn replicated(object: &Value, old: Option<&Value>, errs: &mut Errors) {
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
    if let Some(old) = old {
        errs.immutable(object, old, "/spec/selector", "spec.selector");
    }
}

pub(crate) fn job_spec(spec: &Value, path: &str, errs: &mut Errors) {
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

pub(crate) fn check_schedule(schedule: &str) -> Result<(), String> {
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
