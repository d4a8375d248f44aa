//! ResourceQuotas.

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct ResourceQuota;

impl Kind for ResourceQuota {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::ResourceQuota>(
            self,
            &["quota"],
            NONE,
            &[Status],
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Request"), Column::text("Limit"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let status = &o["status"];
        let mut keys: Vec<&String> = status["hard"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let (mut req, mut lim) = (Vec::new(), Vec::new());
        for k in keys {
            let entry = format!(
                "{k}: {}/{}",
                or(&status["used"][k.as_str()], "0"),
                or(&status["hard"][k.as_str()], "0")
            );
            if k.starts_with("limits.") {
                lim.push(entry)
            } else {
                req.push(entry)
            }
        }
        Row::new()
            .cell("Request", req.join(", "))
            .cell("Limit", lim.join(", "))
    }
}
