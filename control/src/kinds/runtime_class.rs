//! RuntimeClasses: the handler a pod's containers run with (`wasm`, `oci`).

use k8s_openapi::api::node::v1 as node;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct RuntimeClass;

impl Kind for RuntimeClass {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<node::RuntimeClass>(self, &[], NONE, &[])]
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Handler"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Handler", or(&o["handler"], ""))
    }
}
