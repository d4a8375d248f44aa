//! EndpointSlices.

use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::resources::defaults::{items_mut, set_missing};
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct EndpointSlice;

impl Kind for EndpointSlice {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<discovery::EndpointSlice>(self, &[], NONE, &[])]
    }

    fn defaults(&self, object: &mut Value) {
        for port in items_mut(object, "ports") {
            set_missing(port, "protocol", json!("TCP"));
            set_missing(port, "name", json!(""));
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("AddressType"),
            Column::text("Ports"),
            Column::text("Endpoints"),
            AGE,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let ports: Vec<String> = o["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p["port"].as_i64() {
                Some(n) => n.to_string(),
                None => p["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or("*")
                    .to_string(),
            })
            .collect();
        let addrs: Vec<String> = o["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        Row::new()
            .cell("AddressType", or(&o["addressType"], ""))
            .cell("Ports", list_with_more(ports, 3))
            .cell("Endpoints", list_with_more(addrs, 3))
    }
}

/// The first `max` items and how many more.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown: Vec<String> = items.into_iter().take(max).collect();
    let mut ret = shown.join(",");
    if count > max {
        ret = format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}
