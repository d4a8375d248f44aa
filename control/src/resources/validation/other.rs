//! ConfigMaps, Secrets, Namespaces, PVCs, HPAs and Ingresses.

use base64::Engine;
use serde_json::{Value, json};

use super::{Errors, names};
use crate::error::{FieldError, FieldErrorKind};

const DATA_LIMIT: usize = 1024 * 1024;

fn too_long(path: &str) -> FieldError {
    FieldError::new(
        FieldErrorKind::TooLong,
        path,
        None,
        format!("may not be more than {DATA_LIMIT} bytes"),
    )
}

fn keys(map: &Value, field: &str, errs: &mut Errors) -> usize {
    let mut size = 0;
    for (k, v) in map[field].as_object().into_iter().flatten() {
        errs.name(&format!("{field}[{k}]"), k, names::config_key(k));
        size += match v.as_str() {
            Some(s) if field == "binaryData" || field == "data" && map["type"].is_string() => {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_or(s.len(), |b| b.len())
            }
            Some(s) => s.len(),
            None => 0,
        };
    }
    size
}

/// After `immutable: true`, data may not change.
fn immutable_data(object: &Value, old: Option<&Value>, fields: &[&str], errs: &mut Errors) {
    let Some(old) = old.filter(|o| o["immutable"] == true) else {
        return;
    };
    if object["immutable"] != true {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if object.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(
                *f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

pub fn config_map(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let size = keys(object, "data", errs) + keys(object, "binaryData", errs);
    if let (Some(d), Some(b)) = (object["data"].as_object(), object["binaryData"].as_object()) {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                &json!(k),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if size > DATA_LIMIT {
        errs.push(too_long("[]"));
    }
    immutable_data(object, old, &["data", "binaryData"], errs);
}

pub fn secret(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    if keys(object, "data", errs) > DATA_LIMIT {
        errs.push(too_long("data"));
    }
    let has = |k: &str| object["data"].get(k).is_some();
    let required: &[&str] = match object["type"].as_str().unwrap_or_default() {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required {
        if !has(k) {
            errs.push(FieldError::required(format!("data[{k}]"), ""));
        }
    }
    if object["type"] == "kubernetes.io/basic-auth" && !has("username") && !has("password") {
        errs.push(FieldError::required("data[username]", ""));
        errs.push(FieldError::required("data[password]", ""));
    }
    if let Some(old) = old {
        errs.immutable(object, old, "/type", "type");
    }
    immutable_data(object, old, &["data"], errs);
}

pub fn namespace(object: &Value, errs: &mut Errors) {
    for (i, f) in object["spec"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let s = f.as_str().unwrap_or_default();
        errs.name(
            &format!("spec.finalizers[{i}]"),
            s,
            names::qualified_name(s),
        );
    }
}

pub fn pvc(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    if spec["accessModes"].as_array().is_none_or(|a| a.is_empty()) {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if spec.pointer("/resources/requests/storage").is_none() {
        errs.push(FieldError::required("spec.resources[storage]", ""));
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(r) = v
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
            {
                r.remove("storage");
            }
            if let Some(m) = v.as_object_mut() {
                // The binder fills these in after creation.
                m.remove("volumeName");
                m.remove("storageClassName");
            }
            v
        };
        if strip(spec) != strip(&old["spec"]) {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
}

pub fn hpa(object: &Value, errs: &mut Errors) {
    let spec = &object["spec"];
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    if min < 1 {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            &json!(min),
            "must be greater than or equal to 1",
        ));
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    } else if max < min {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for f in ["kind", "name"] {
        if spec["scaleTargetRef"][f]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            errs.push(FieldError::required(format!("spec.scaleTargetRef.{f}"), ""));
        }
    }
}

pub fn ingress(object: &Value, errs: &mut Errors) {
    let spec = &object["spec"];
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && spec.get("defaultBackend").is_none_or(Value::is_null) {
        errs.push(FieldError::invalid(
            "spec",
            &Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = spec.get("defaultBackend").filter(|b| !b.is_null()) {
        backend(b, "spec.defaultBackend", errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        if let Some(host) = rule["host"].as_str().filter(|h| !h.is_empty()) {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    format!("{rp}.host"),
                    &json!(host),
                    "must be a DNS name, not an IP address",
                ));
            } else {
                let h = host.strip_prefix("*.").unwrap_or(host);
                errs.name(&format!("{rp}.host"), host, names::dns1123_subdomain(h));
            }
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths = http["paths"].as_array().cloned().unwrap_or_default();
        if paths.is_empty() {
            errs.push(FieldError::required(format!("{rp}.http.paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = format!("{rp}.http.paths[{j}]");
            let path = p["path"].as_str().unwrap_or_default();
            match p["pathType"].as_str() {
                None => errs.push(FieldError::required(
                    format!("{pp}.pathType"),
                    "pathType must be specified",
                )),
                Some("Exact") | Some("Prefix") => {
                    if !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            format!("{pp}.path"),
                            &json!(path),
                            "must be an absolute path",
                        ));
                    }
                    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                        if path.contains(bad) {
                            errs.push(FieldError::invalid(
                                format!("{pp}.path"),
                                &json!(path),
                                format!("must not contain '{bad}'"),
                            ));
                        }
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path.is_empty() && !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            format!("{pp}.path"),
                            &json!(path),
                            "must be an absolute path",
                        ));
                    }
                }
                Some(_) => errs.push(FieldError::not_supported(
                    format!("{pp}.pathType"),
                    &p["pathType"],
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            backend(&p["backend"], &format!("{pp}.backend"), errs);
        }
    }
}

fn backend(b: &Value, path: &str, errs: &mut Errors) {
    let service = b.get("service").filter(|s| !s.is_null());
    let resource = b.get("resource").filter(|s| !s.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            &json!(""),
            "resource or service backend is required",
        )),
        (None, Some(_)) => {}
        (Some(s), None) => {
            match s["name"].as_str().filter(|n| !n.is_empty()) {
                None => errs.push(FieldError::required(format!("{path}.service.name"), "")),
                Some(n) => errs.name(&format!("{path}.service.name"), n, names::dns1035_label(n)),
            }
            let port = &s["port"];
            let name = port["name"].as_str().filter(|n| !n.is_empty());
            let number = port["number"].as_i64().filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    path,
                    &json!(""),
                    "cannot set both port name & port number",
                )),
                (None, None) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
                (Some(n), None) => {
                    errs.name(&format!("{path}.service.port.name"), n, names::port_name(n))
                }
                (None, Some(n)) if !(1..=65535).contains(&n) => errs.push(FieldError::invalid(
                    format!("{path}.service.port.number"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                _ => {}
            }
        }
    }
}
