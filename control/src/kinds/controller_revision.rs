//! ControllerRevisions: the history StatefulSets and DaemonSets keep.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{AGE, Column, NAME, Row, int, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct ControllerRevision;

impl Kind for ControllerRevision {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<apps::ControllerRevision>(self, &[], NONE, &[])]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Controller"),
            Column::text("Revision"),
            AGE,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let controller = o["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true)
            .map(|r| {
                let api = r["apiVersion"].as_str().unwrap_or_default();
                let kind = r["kind"].as_str().unwrap_or_default();
                let gk = match api.split_once('/') {
                    Some((g, _)) => format!("{kind}.{g}"),
                    None => kind.to_string(),
                };
                format!("{}/{}", gk.to_lowercase(), or(&r["name"], ""))
            })
            .unwrap_or_else(|| "<none>".into());
        Row::new()
            .cell("Controller", controller)
            .cell("Revision", int(&o["revision"]))
    }
}
