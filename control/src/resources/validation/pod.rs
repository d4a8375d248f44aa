//! Pod specs, in pods and in every pod template.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{Errors, meta, names};
use crate::error::FieldError;
use crate::resources::defaults::volume_sources;
use peapod_common::knative;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const SECCOMP_TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];

/// A pod template inside a workload: labels and spec. `claims` names
/// volumes the workload adds (a StatefulSet's volume claim templates).
pub(crate) fn template(template: &Value, path: &str, claims: &[&str], errs: &mut Errors) {
    if let Some(labels) = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        meta::labels_map(labels, &format!("{path}.labels"), errs);
    }
    function_annotations(&template["metadata"], &format!("{path}.metadata"), errs);
    pod_spec(&template["spec"], &format!("{path}.spec"), claims, errs);
}

/// The bounds an HTTP function's pod may set on its Wasm containers'
/// requests: a positive whole number up to Knative's limits.
pub(crate) fn function_annotations(meta: &Value, path: &str, errs: &mut Errors) {
    for (name, max) in [
        (knative::CONCURRENCY_ANNOTATION, 1000),
        (
            knative::REQUEST_TIMEOUT_ANNOTATION,
            knative::MAX_REQUEST_TIMEOUT_SECONDS,
        ),
    ] {
        let Some(value) = meta["annotations"].get(name) else {
            continue;
        };
        let ok = value
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| (1..=max).contains(&n));
        if !ok {
            errs.push(FieldError::invalid(
                format!("{path}.annotations[{name}]"),
                value,
                format!("must be a whole number between 1 and {max}"),
            ));
        }
    }
}

pub(crate) fn pod_spec(spec: &Value, path: &str, claims: &[&str], errs: &mut Errors) {
    let mut volumes = volumes(spec, path, errs);
    volumes.extend(claims.iter().map(|c| c.to_string()));
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names_seen = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            container(
                c,
                &format!("{path}.{list}[{i}]"),
                &volumes,
                &mut names_seen,
                errs,
            );
            if list == "containers" && c.get("restartPolicy").is_some_and(|r| !r.is_null()) {
                errs.push(FieldError::forbidden(
                    format!("{path}.{list}[{i}].restartPolicy"),
                    "may not be set for non-init containers",
                ));
            }
        }
    }
    seccomp_profile(
        &spec["securityContext"]["seccompProfile"],
        &format!("{path}.securityContext.seccompProfile"),
        errs,
    );
    errs.one_of(
        spec,
        "restartPolicy",
        &format!("{path}.restartPolicy"),
        RESTART_POLICIES,
    );
    errs.one_of(
        spec,
        "dnsPolicy",
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64()
        && n < 1
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            &json!(n),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs.non_negative(
        spec,
        "terminationGracePeriodSeconds",
        &format!("{path}.terminationGracePeriodSeconds"),
    );
    for field in ["hostname", "subdomain"] {
        if let Some(s) = spec[field].as_str().filter(|s| !s.is_empty()) {
            errs.name(&format!("{path}.{field}"), s, names::dns1123_label(s));
        }
    }
    if let Some(sel) = spec["nodeSelector"].as_object() {
        meta::labels_map(sel, &format!("{path}.nodeSelector"), errs);
    }
}

/// Checks volumes and returns their names.
fn volumes(spec: &Value, path: &str, errs: &mut Errors) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}.volumes[{i}]");
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            errs.name(&format!("{p}.name"), name, names::dns1123_label(name));
            if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{p}.name"), &json!(name)));
            }
        }
        let sources: Vec<&&str> = volume_sources()
            .iter()
            .filter(|s| v.get(**s).is_some_and(|x| !x.is_null()))
            .collect();
        if let Some(second) = sources.get(1) {
            errs.push(FieldError::forbidden(
                format!("{p}.{second}"),
                "may not specify more than 1 volume type",
            ));
        }
        let projections = v["projected"]["sources"].as_array().into_iter().flatten();
        for (j, source) in projections.enumerate() {
            let token = &source["serviceAccountToken"];
            if token.is_object() {
                let tp = format!("{p}.projected.sources[{j}].serviceAccountToken");
                token_projection(token, &tp, errs);
            }
        }
    }
    seen
}

/// A projected ServiceAccount token: a file name in the volume, and a
/// lifetime the TokenRequest API grants.
fn token_projection(token: &Value, path: &str, errs: &mut Errors) {
    let file = token["path"].as_str().unwrap_or_default();
    if file.is_empty() {
        errs.push(FieldError::required(format!("{path}.path"), ""));
    } else if file.starts_with('/') {
        errs.push(FieldError::invalid(
            format!("{path}.path"),
            &json!(file),
            "must be a relative path",
        ));
    } else if file.split('/').any(|c| c == "..") {
        errs.push(FieldError::invalid(
            format!("{path}.path"),
            &json!(file),
            "must not contain '..'",
        ));
    }
    if let Some(seconds) = token["expirationSeconds"].as_i64() {
        let detail = if seconds < 600 {
            Some("may not specify a duration less than 10 minutes")
        } else if seconds > 1 << 32 {
            Some("may not specify a duration larger than 2^32 seconds")
        } else {
            None
        };
        if let Some(detail) = detail {
            errs.push(FieldError::invalid(
                format!("{path}.expirationSeconds"),
                &json!(seconds),
                detail,
            ));
        }
    }
}

fn container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    seen: &mut HashSet<String>,
    errs: &mut Errors,
) {
    let name = c["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errs.name(&format!("{path}.name"), name, names::dns1123_label(name));
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), &json!(name)));
        }
    }
    seccomp_profile(
        &c["securityContext"]["seccompProfile"],
        &format!("{path}.securityContext.seccompProfile"),
        errs,
    );
    let image = c["image"].as_str().unwrap_or_default();
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            &json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    errs.one_of(
        c,
        "imagePullPolicy",
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    );
    errs.one_of(
        c,
        "terminationMessagePolicy",
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    let mut port_names = HashSet::new();
    for (i, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        match p["containerPort"].as_i64() {
            None | Some(0) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(n) => port_range(n, &format!("{pp}.containerPort"), errs),
        }
        if let Some(n) = p["hostPort"].as_i64().filter(|n| *n != 0) {
            port_range(n, &format!("{pp}.hostPort"), errs);
        }
        if let Some(n) = p["name"].as_str().filter(|n| !n.is_empty()) {
            errs.name(&format!("{pp}.name"), n, names::port_name(n));
            if !port_names.insert(n.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), &json!(n)));
            }
        }
        errs.one_of(p, "protocol", &format!("{pp}.protocol"), PROTOCOLS);
    }
    for (i, e) in c["env"].as_array().into_iter().flatten().enumerate() {
        let n = e["name"].as_str().unwrap_or_default();
        let p = format!("{path}.env[{i}].name");
        if n.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            errs.name(&p, n, names::env_var_name(n));
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, m) in c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}.volumeMounts[{i}]");
        let n = m["name"].as_str().unwrap_or_default();
        if n.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if !volumes.contains(n) {
            errs.push(FieldError::new(
                crate::error::FieldErrorKind::NotFound,
                format!("{p}.name"),
                Some(format!("{n:?}")),
                "",
            ));
        }
        let sub = m["subPath"].as_str().filter(|s| !s.is_empty());
        let expr = m["subPathExpr"].as_str().filter(|s| !s.is_empty());
        if sub.is_some() && expr.is_some() {
            errs.push(FieldError::invalid(
                format!("{p}.subPathExpr"),
                &json!(expr),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
        for (field, value) in [("subPath", sub), ("subPathExpr", expr)] {
            if let Some(v) = value {
                local_descending_path(v, &format!("{p}.{field}"), errs);
            }
        }
        let mp = m["mountPath"].as_str().unwrap_or_default();
        if mp.is_empty() {
            errs.push(FieldError::required(format!("{p}.mountPath"), ""));
        } else if !mount_paths.insert(mp.to_string()) {
            errs.push(FieldError::invalid(
                format!("{p}.mountPath"),
                &json!(mp),
                "must be unique",
            ));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe).filter(|p| p.is_object()) {
            self::probe(
                p,
                &format!("{path}.{probe}"),
                probe != "readinessProbe",
                errs,
            );
        }
    }
}

/// A `seccompProfile`: a known type, and a file for `Localhost` only,
/// beneath the node's seccomp directory.
fn seccomp_profile(p: &Value, path: &str, errs: &mut Errors) {
    if p.is_null() {
        return;
    }
    let kind = p["type"].as_str().unwrap_or_default();
    if kind.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), ""));
    }
    errs.one_of(p, "type", &format!("{path}.type"), SECCOMP_TYPES);
    let file_path = format!("{path}.localhostProfile");
    match p["localhostProfile"].as_str() {
        Some(file) if kind == "Localhost" => local_descending_path(file, &file_path, errs),
        Some(file) => errs.push(FieldError::invalid(
            file_path,
            &json!(file),
            "can only be set when seccomp type is Localhost",
        )),
        None if kind == "Localhost" => errs.push(FieldError::required(
            file_path,
            "must be set when seccomp type is Localhost",
        )),
        None => {}
    }
}

/// A path that stays beneath where it starts, as kube-apiserver requires of
/// subPath: relative, and no `..` component.
fn local_descending_path(v: &str, path: &str, errs: &mut Errors) {
    if v.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            &json!(v),
            "must be a relative path",
        ));
    }
    if v.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            path,
            &json!(v),
            "must not contain '..'",
        ));
    }
}

fn port_range(n: i64, path: &str, errs: &mut Errors) {
    if !(1..=65535).contains(&n) {
        errs.push(FieldError::invalid(
            path,
            &json!(n),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

fn probe(p: &Value, path: &str, success_must_be_one: bool, errs: &mut Errors) {
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| p.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [_] => {}
        [_, second, ..] => errs.push(FieldError::forbidden(
            format!("{path}.{second}"),
            "may not specify more than 1 handler type",
        )),
    }
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        errs.non_negative(p, field, &format!("{path}.{field}"));
    }
    if success_must_be_one && let Some(n) = p["successThreshold"].as_i64().filter(|n| *n != 1) {
        errs.push(FieldError::invalid(
            format!("{path}.successThreshold"),
            &json!(n),
            "must be 1",
        ));
    }
    if let Some(cmd) = p.pointer("/exec")
        && cmd["command"].as_array().is_none_or(|c| c.is_empty())
    {
        errs.push(FieldError::required(format!("{path}.exec.command"), ""));
    }
    if let Some(h) = p.get("httpGet").filter(|h| h.is_object()) {
        errs.one_of(
            h,
            "scheme",
            &format!("{path}.httpGet.scheme"),
            &["HTTP", "HTTPS"],
        );
    }
}
