//! Nodes: allocatable defaults to capacity; the status is the node's own.

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::defaults::{set_missing, status};
use crate::resources::fields::Field;
use crate::resources::table::{AGE, Column, NAME, Row, first_of_type, or};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct Node;

impl Kind for Node {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Node>(self, &["no"], NONE, &[Status, Proxy])]
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(capacity) = object.pointer("/status/capacity").cloned() {
            set_missing(status(object), "allocatable", capacity);
        }
    }

    /// A node registers with the status it reports.
    fn initial_status(&self, _object: &Value) -> Option<Value> {
        None
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] =
            &[Field::new("spec.unschedulable", "/spec/unschedulable").or("false")];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Status"),
            Column::text("Roles"),
            AGE,
            Column::text("Version"),
            Column::text("Internal-IP").wide(),
            Column::text("External-IP").wide(),
            Column::text("OS-Image").wide(),
            Column::text("Kernel-Version").wide(),
            Column::text("Container-Runtime").wide(),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let ready = o["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .rfind(|c| c["type"] == "Ready");
        let mut st = vec![match ready {
            Some(c) if c["status"] == "True" => "Ready",
            Some(_) => "NotReady",
            None => "Unknown",
        }];
        if spec["unschedulable"] == true {
            st.push("SchedulingDisabled");
        }
        let mut roles: Vec<String> = o["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                    (!r.is_empty()).then(|| r.to_string())
                } else if k == "kubernetes.io/role" {
                    v.as_str().filter(|s| !s.is_empty()).map(String::from)
                } else {
                    None
                }
            })
            .collect();
        roles.sort();
        roles.dedup();
        let info = &status["nodeInfo"];
        let addr = |t: &str| {
            first_of_type(&status["addresses"], t)
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>")
                .to_string()
        };
        let mut kernel = or(&info["kernelVersion"], "<unknown>");
        if let Some(arch) = info["architecture"].as_str().filter(|a| !a.is_empty()) {
            kernel = format!("{kernel} ({arch})");
        }
        Row::new()
            .cell("Status", st.join(","))
            .cell(
                "Roles",
                if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                },
            )
            .cell("Version", or(&info["kubeletVersion"], ""))
            .cell("Internal-IP", addr("InternalIP"))
            .cell("External-IP", addr("ExternalIP"))
            .cell("OS-Image", or(&info["osImage"], "<unknown>"))
            .cell("Kernel-Version", kernel)
            .cell(
                "Container-Runtime",
                or(&info["containerRuntimeVersion"], "<unknown>"),
            )
    }
}
