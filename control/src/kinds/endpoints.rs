//! Endpoints: the addresses behind a Service.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::resources::defaults::{items_mut, set_missing};
use crate::resources::table::{AGE, Column, NAME, Row};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct Endpoints;

impl Kind for Endpoints {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Endpoints>(self, &["ep"], NONE, &[])]
    }

    fn defaults(&self, object: &mut Value) {
        for subset in items_mut(object, "subsets") {
            for port in items_mut(subset, "ports") {
                set_missing(port, "protocol", json!("TCP"));
            }
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Endpoints"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Endpoints", endpoints(o))
    }
}

/// The first three addresses with their ports, and how many more.
fn endpoints(o: &Value) -> String {
    let subsets = o["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for ss in &subsets {
        let addrs: Vec<String> = ss["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(String::from))
            .collect();
        let ports = ss["ports"].as_array().cloned().unwrap_or_default();
        if ports.is_empty() {
            count += addrs.len();
            list.extend(addrs.iter().cloned());
            continue;
        }
        for p in &ports {
            count += addrs.len();
            for a in &addrs {
                if a.contains(':') {
                    list.push(format!("[{a}]:{}", p["port"]));
                } else {
                    list.push(format!("{a}:{}", p["port"]));
                }
            }
        }
    }
    let shown: Vec<String> = list.into_iter().take(3).collect();
    if count > 3 {
        format!("{} + {} more...", shown.join(","), count - 3)
    } else {
        shown.join(",")
    }
}
