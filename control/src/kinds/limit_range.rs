//! LimitRanges.

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{Column, NAME, Row, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct LimitRange;

impl Kind for LimitRange {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::LimitRange>(self, &["limits"], NONE, &[])]
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::date("Created At")]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Created At", or(&o["metadata"]["creationTimestamp"], ""))
    }
}
