//! ServiceAccounts.

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::table::{AGE, Column, NAME, Row};
use crate::resources::{ResourceType, Subresource, served};

#[derive(Debug)]
pub struct ServiceAccount;

impl Kind for ServiceAccount {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::ServiceAccount>(
            self,
            &["sa"],
            NONE,
            &[Subresource::Token],
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Secrets"), AGE]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        Row::new().cell("Secrets", o["secrets"].as_array().map_or(0, Vec::len))
    }
}
