//! StatefulSets: ordered pods, claim templates, what an update may change.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{entry, items_mut, set_missing, spec, status, template};
use crate::resources::table::{AGE, CONTAINERS, Column, IMAGES, NAME, Row, int};
use crate::resources::validation::workloads::{selector_matches_template, template_restart_always};
use crate::resources::validation::{Errors, names, pod};
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct StatefulSet;

impl Kind for StatefulSet {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<apps::StatefulSet>(
            self,
            &["sts"],
            ALL,
            &[Status, Scale],
        )]
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1123_label
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        set_missing(spec, "replicas", json!(1));
        set_missing(spec, "podManagementPolicy", json!("OrderedReady"));
        let strategy = entry(spec, "updateStrategy", json!({}));
        if strategy.get("type").is_none() {
            strategy["type"] = json!("RollingUpdate");
            set_missing(strategy, "rollingUpdate", json!({}));
        }
        if strategy["type"] == "RollingUpdate"
            && let Some(ru) = strategy.get_mut("rollingUpdate")
        {
            set_missing(ru, "partition", json!(0));
        }
        set_missing(spec, "revisionHistoryLimit", json!(10));
        set_missing(
            spec,
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        for pvc in items_mut(spec, "volumeClaimTemplates") {
            set_missing(pvc, "apiVersion", json!("v1"));
            set_missing(pvc, "kind", json!("PersistentVolumeClaim"));
            if let Some(s) = pvc.get_mut("spec") {
                set_missing(s, "volumeMode", json!("Filesystem"));
            }
            set_missing(status(pvc), "phase", json!("Pending"));
        }
        template(spec);
    }

    fn validate(&self, object: &Value, old: Option<&Value>, errs: &mut Errors) {
        let spec = &object["spec"];
        for f in ["replicas", "minReadySeconds"] {
            errs.non_negative(spec, f, &format!("spec.{f}"));
        }
        if let Some(p) = spec["podManagementPolicy"].as_str()
            && !matches!(p, "OrderedReady" | "Parallel")
        {
            errs.push(FieldError::invalid(
                "spec.podManagementPolicy",
                &json!(p),
                "must be 'OrderedReady' or 'Parallel'",
            ));
        }
        if let Some(t) = spec["updateStrategy"]["type"].as_str()
            && !matches!(t, "RollingUpdate" | "OnDelete")
        {
            errs.push(FieldError::invalid(
                "spec.updateStrategy",
                &spec["updateStrategy"],
                "must be 'RollingUpdate' or 'OnDelete'",
            ));
        }
        selector_matches_template(spec, "statefulset", errs);
        let claims: Vec<&str> = spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        pod::template(&spec["template"], "spec.template", &claims, errs);
        template_restart_always(spec, "StatefulSet", errs);
        if let Some(old) = old {
            let mut a = spec.clone();
            let mut b = old["spec"].clone();
            for v in [&mut a, &mut b] {
                if let Some(m) = v.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
            }
            if a != b {
                errs.push(FieldError::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
            }
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![NAME, Column::text("Ready"), AGE, CONTAINERS, IMAGES]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        Row::new()
            .cell(
                "Ready",
                format!(
                    "{}/{}",
                    int(&o["status"]["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                ),
            )
            .containers(&spec["template"]["spec"])
    }
}
