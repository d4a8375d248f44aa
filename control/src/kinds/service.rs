//! Services: types, ports, cluster IPs and what an update may change.
//! (Allocating cluster IPs and node ports is `crate::objects::services`.)

use std::collections::HashSet;

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{entry, items_mut, set_missing, spec};
use crate::resources::fields::Field;
use crate::resources::table::{AGE, Column, NAME, Row, labels, lb_addresses, or};
use crate::resources::validation::{Errors, labels_map, names};
use crate::resources::{ResourceType, Subresource::*, served};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

#[derive(Debug)]
pub struct Service;

impl Kind for Service {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Service>(
            self,
            &["svc"],
            ALL,
            &[Status, Proxy],
        )]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1035_label
    }

    fn defaults(&self, object: &mut Value) {
        defaults(object)
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        validate(object, old, errs)
    }

    fn initial_status(&self, _object: &Value) -> Option<Value> {
        Some(json!({"loadBalancer": {}}))
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[
            Field::new("spec.clusterIP", "/spec/clusterIP"),
            Field::new("spec.type", "/spec/type"),
        ];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Type"),
            Column::text("Cluster-IP"),
            Column::text("External-IP"),
            Column::text("Port(s)"),
            AGE,
            Column::text("Selector").wide(),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let ty = spec["type"].as_str().unwrap_or_default();
        let external_ips: Vec<String> = spec["externalIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let external = match ty {
            "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
            "ClusterIP" | "NodePort" => "<none>".into(),
            "LoadBalancer" => {
                let mut all = lb_addresses(&status["loadBalancer"]["ingress"]);
                all.extend(external_ips);
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => or(&spec["externalName"], ""),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64().filter(|n| *n > 0) {
                    Some(np) => format!("{}:{np}/{proto}", p["port"]),
                    None => format!("{}/{proto}", p["port"]),
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        };
        let cluster_ip = spec["clusterIPs"][0]
            .as_str()
            .or_else(|| spec["clusterIP"].as_str().filter(|s| !s.is_empty()))
            .unwrap_or("<none>");
        Row::new()
            .cell("Type", ty)
            .cell("Cluster-IP", cluster_ip)
            .cell("External-IP", external)
            .cell("Port(s)", ports)
            .cell("Selector", labels(&spec["selector"]))
    }
}

fn defaults(object: &mut Value) {
    let spec = spec(object);
    set_missing(spec, "type", json!("ClusterIP"));
    set_missing(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "None" {
        if let Some(m) = spec.as_object_mut() {
            m.remove("sessionAffinityConfig");
        }
    } else if spec["sessionAffinity"] == "ClientIP" {
        let cfg = entry(spec, "sessionAffinityConfig", json!({}));
        let client = entry(cfg, "clientIP", json!({}));
        set_missing(client, "timeoutSeconds", json!(10800));
    }
    for p in items_mut(spec, "ports") {
        set_missing(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset {
            p["targetPort"] = p["port"].clone();
        }
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    let external = matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        || spec["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    if external {
        set_missing(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind != "ExternalName" {
        set_missing(spec, "internalTrafficPolicy", json!("Cluster"));
        set_missing(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_missing(spec, "ipFamilies", json!(["IPv4"]));
    }
    if kind == "LoadBalancer" {
        set_missing(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // `clusterIPs` mirrors `clusterIP` once it is known.
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let ip = ip.to_string();
        set_missing(spec, "clusterIPs", json!([ip]));
    }
}

fn validate(object: &Value, old: Option<&Value>, errs: &mut Errors) {
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
        labels_map(sel, "spec.selector", errs);
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
