//! PersistentVolumes, and the cells they share with claims.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::resources::defaults::{set_missing, status};
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct PersistentVolume;

impl Kind for PersistentVolume {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::PersistentVolume>(
            self,
            &["pv"],
            NONE,
            &[Status],
        )]
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(spec) = object.get_mut("spec") {
            set_missing(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_missing(spec, "volumeMode", json!("Filesystem"));
        }
        set_missing(status(object), "phase", json!("Pending"));
    }

    fn initial_status(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Pending", "lastPhaseTransitionTime": crate::objects::now()}))
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Capacity"),
            Column::text("Access Modes"),
            Column::text("Reclaim Policy"),
            Column::text("Status"),
            Column::text("Claim"),
            Column::text("StorageClass"),
            Column::text("VolumeAttributesClass"),
            Column::text("Reason"),
            AGE,
            Column::text("VolumeMode").wide(),
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let status = &o["status"];
        let claim = match spec.get("claimRef").filter(|c| c.is_object()) {
            Some(c) => format!("{}/{}", or(&c["namespace"], ""), or(&c["name"], "")),
            None => String::new(),
        };
        Row::new()
            .cell("Capacity", or(&spec["capacity"]["storage"], "0"))
            .cell("Access Modes", access_modes(&spec["accessModes"]))
            .cell(
                "Reclaim Policy",
                or(&spec["persistentVolumeReclaimPolicy"], ""),
            )
            .cell("Status", terminating_or(o, &status["phase"]))
            .cell("Claim", claim)
            .cell("StorageClass", storage_class(o))
            .cell(
                "VolumeAttributesClass",
                or(&spec["volumeAttributesClassName"], "<unset>"),
            )
            .cell("Reason", or(&status["reason"], ""))
            .cell("VolumeMode", or(&spec["volumeMode"], "<unset>"))
    }
}

/// `RWO,ROX,...` in Kubernetes' order.
pub(super) fn access_modes(modes: &Value) -> String {
    let list = modes.as_array().cloned().unwrap_or_default();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| list.iter().any(|x| x == m))
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(",")
}

pub(super) fn terminating_or(o: &Value, phase: &Value) -> String {
    if o["metadata"].get("deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        or(phase, "")
    }
}

pub(super) fn storage_class(o: &Value) -> String {
    match o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str() {
        Some(s) => s.to_string(),
        None => or(&o["spec"]["storageClassName"], ""),
    }
}
