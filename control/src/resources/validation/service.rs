//! Services.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{Errors, names};
use crate::error::FieldError;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub fn service(object: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = &object["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    errs.one_of(spec, "type", "spec.type", TYPES);
    let headless = spec["clusterIP"] == "None";
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut seen_names = HashSet::new();
    let mut seen_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match p["name"].as_str().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errs.push(FieldError::required(format!("{path}.name"), "")),
            None => {}
            Some(n) => {
                errs.name(&format!("{path}.name"), n, names::dns1123_label(n));
                if !seen_names.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{path}.name"), &json!(n)));
                }
            }
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("{path}.port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        errs.one_of(
            p,
            "protocol",
            &format!("{path}.protocol"),
            &["SCTP", "TCP", "UDP"],
        );
        let key = (p["protocol"].as_str().unwrap_or("TCP").to_string(), port);
        if !seen_ports.insert(key) {
            errs.push(FieldError::duplicate(path.clone(), p));
        }
        match &p["targetPort"] {
            Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                errs.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    &p["targetPort"],
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Value::String(s) => errs.name(&format!("{path}.targetPort"), s, names::port_name(s)),
            _ => {}
        }
        if ty == "ClusterIP" && p["nodePort"].as_i64().is_some_and(|n| n != 0) {
            errs.push(FieldError::forbidden(
                format!("{path}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if matches!(ty, "NodePort" | "LoadBalancer") && headless {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &json!("None"),
            format!("may not be set to 'None' for {ty} services"),
        ));
    }
    if ty == "ExternalName" {
        match spec["externalName"].as_str().filter(|s| !s.is_empty()) {
            None => errs.push(FieldError::required("spec.externalName", "")),
            Some(n) => {
                let n = n.strip_suffix('.').unwrap_or(n);
                errs.name("spec.externalName", n, names::dns1123_subdomain(n));
            }
        }
    }
    errs.one_of(
        spec,
        "sessionAffinity",
        "spec.sessionAffinity",
        &["ClientIP", "None"],
    );
    errs.one_of(
        spec,
        "internalTrafficPolicy",
        "spec.internalTrafficPolicy",
        &["Cluster", "Local"],
    );
    errs.one_of(
        spec,
        "externalTrafficPolicy",
        "spec.externalTrafficPolicy",
        &["Cluster", "Local"],
    );
    if let Some(sel) = spec["selector"].as_object() {
        super::meta::labels_map(sel, "spec.selector", errs);
    }
    if let Some(old) = old {
        let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or_default();
        let new_ip = spec["clusterIP"].as_str().unwrap_or_default();
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip && ty != "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!([new_ip]),
                "may not change once set",
            ));
        }
    }
}
