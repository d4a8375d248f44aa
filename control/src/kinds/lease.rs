//! Leases: node heartbeats and leader election.

use k8s_openapi::api::coordination::v1 as coordination;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct Lease;

impl Kind for Lease {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<coordination::Lease>(self, &[], NONE, &[])]
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Holder"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Holder", or(&o["spec"]["holderIdentity"], ""))
    }
}
