//! Ingresses: rules, paths and backends.

use k8s_openapi::api::networking::v1 as networking;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::error::FieldError;
use crate::resources::table::{AGE, Column, NAME, Row, lb_addresses, or};
use crate::resources::validation::{Errors, names};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct Ingress;

impl Kind for Ingress {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<networking::Ingress>(
            self,
            &["ing"],
            NONE,
            &[Status],
        )]
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        validate(object, errs)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Class"),
            Column::text("Hosts"),
            Column::text("Address"),
            Column::text("Ports"),
            AGE,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let rules = spec["rules"].as_array().cloned().unwrap_or_default();
        let hosts: Vec<String> = rules
            .iter()
            .filter_map(|r| {
                r["host"]
                    .as_str()
                    .filter(|h| !h.is_empty())
                    .map(String::from)
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else if rules.len() > 3 {
            format!(
                "{} + {} more...",
                hosts.into_iter().take(3).collect::<Vec<_>>().join(","),
                rules.len() - 3
            )
        } else {
            hosts.join(",")
        };
        let tls = spec["tls"].as_array().is_some_and(|t| !t.is_empty());
        Row::new()
            .cell("Class", or(&spec["ingressClassName"], "<none>"))
            .cell("Hosts", hosts)
            .cell(
                "Address",
                lb_addresses(&o["status"]["loadBalancer"]["ingress"]).join(","),
            )
            .cell("Ports", if tls { "80, 443" } else { "80" })
    }
}

fn validate(object: &Value, errs: &mut Errors) {
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
