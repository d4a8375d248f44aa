//! HorizontalPodAutoscalers, served as `autoscaling/v2` and, converted,
//! as `autoscaling/v1` (what `kubectl autoscale` 1.32 writes).

use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling};
use serde_json::{Value, json};

use super::{ALL, Kind};
use crate::error::FieldError;
use crate::resources::defaults::{set_missing, spec};
use crate::resources::table::{AGE, Column, NAME, Row, int, or};
use crate::resources::validation::Errors;
use crate::resources::{ResourceType, Subresource::*, served};

#[derive(Debug)]
pub struct HorizontalPodAutoscaler;

impl Kind for HorizontalPodAutoscaler {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![
            served::<autoscaling::HorizontalPodAutoscaler>(self, &["hpa"], ALL, &[Status]),
            served::<autoscaling_v1::HorizontalPodAutoscaler>(self, &["hpa"], ALL, &[Status]),
        ]
    }

    fn defaults(&self, object: &mut Value) {
        let spec = spec(object);
        set_missing(spec, "minReplicas", json!(1));
        if spec
            .get("metrics")
            .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
        {
            spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        }
    }

    fn validate(&self, object: &Value, _old: Option<&Value>, errs: &mut Errors) {
        let spec = &object["spec"];
        let min = spec["minReplicas"].as_i64().unwrap_or(1);
        if min < 1 {
            errs.push(FieldError::invalid(
                "spec.minReplicas",
                &json!(min),
                "must be greater than or equal to 1",
            ));
        }
        let max = spec["maxReplicas"].as_i64().unwrap_or(0);
        if max < 1 {
            errs.push(FieldError::invalid(
                "spec.maxReplicas",
                &json!(max),
                "must be greater than 0",
            ));
        } else if max < min {
            errs.push(FieldError::invalid(
                "spec.maxReplicas",
                &json!(max),
                "must be greater than or equal to `minReplicas`",
            ));
        }
        for f in ["kind", "name"] {
            if spec["scaleTargetRef"][f]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                errs.push(FieldError::required(format!("spec.scaleTargetRef.{f}"), ""));
            }
        }
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Reference"),
            Column::text("Targets"),
            Column::text("MinPods"),
            Column::text("MaxPods"),
            Column::text("Replicas"),
            AGE,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        Row::new()
            .cell(
                "Reference",
                format!(
                    "{}/{}",
                    or(&spec["scaleTargetRef"]["kind"], ""),
                    or(&spec["scaleTargetRef"]["name"], "")
                ),
            )
            .cell("Targets", targets(o))
            .cell(
                "MinPods",
                spec["minReplicas"]
                    .as_i64()
                    .map_or("<unset>".to_string(), |m| m.to_string()),
            )
            .cell("MaxPods", int(&spec["maxReplicas"]))
            .cell("Replicas", int(&o["status"]["currentReplicas"]))
    }
}

/// Each metric's current value against its target, as `kubectl get hpa` prints.
fn targets(o: &Value) -> String {
    let specs = o["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = o["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let st = statuses.get(i);
            let ty = m["type"].as_str().unwrap_or_default();
            match ty {
                "Resource" | "ContainerResource" => {
                    let key = if ty == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let r = &m[key];
                    let target = &r["target"];
                    let name = or(&r["name"], "");
                    let current = st.map(|s| &s[key]["current"]);
                    if target["averageValue"].is_string() {
                        let cur = current
                            .and_then(|c| c["averageValue"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{name}: {cur}/{}", or(&target["averageValue"], ""))
                    } else {
                        let cur = current
                            .and_then(|c| c["averageUtilization"].as_i64())
                            .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                        let tgt = target["averageUtilization"]
                            .as_i64()
                            .map_or("<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {cur}/{tgt}")
                    }
                }
                "Pods" => {
                    let cur = st
                        .and_then(|s| s["pods"]["current"]["averageValue"].as_str())
                        .unwrap_or("<unknown>");
                    format!("{cur}/{}", or(&m["pods"]["target"]["averageValue"], ""))
                }
                "Object" | "External" => {
                    let key = if ty == "Object" { "object" } else { "external" };
                    let target = &m[key]["target"];
                    if target["averageValue"].is_string() {
                        let cur = st
                            .and_then(|s| s[key]["current"]["averageValue"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{cur}/{} (avg)", or(&target["averageValue"], ""))
                    } else {
                        let cur = st
                            .and_then(|s| s[key]["current"]["value"].as_str())
                            .unwrap_or("<unknown>");
                        format!("{cur}/{}", or(&target["value"], ""))
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}
