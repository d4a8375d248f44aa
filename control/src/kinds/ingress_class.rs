//! IngressClasses: which controller serves an Ingress, and the default.

use k8s_openapi::api::networking::v1 as networking;
use serde_json::{Value, json};

use super::{Kind, NONE};
use crate::resources::defaults::set_missing;
use crate::resources::table::{AGE, Column, NAME, Row, or};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct IngressClass;

impl Kind for IngressClass {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<networking::IngressClass>(self, &[], NONE, &[])]
    }

    fn defaults(&self, object: &mut Value) {
        if let Some(p) = object.pointer_mut("/spec/parameters") {
            set_missing(p, "scope", json!("Cluster"));
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::text("Controller"),
            Column::text("Parameters"),
            AGE,
        ]
    }

    fn row(&self, o: &Value, _now: jiff::Timestamp) -> Row {
        let spec = &o["spec"];
        let name = json!(o["metadata"]["name"]);
        let default =
            o["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true";
        let shown = format!(
            "{}{}",
            name.as_str().unwrap_or_default(),
            if default { " (default)" } else { "" }
        );
        let params = match spec.get("parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let group = p["apiGroup"]
                    .as_str()
                    .map(|g| format!(".{g}"))
                    .unwrap_or_default();
                format!("{}{group}/{}", or(&p["kind"], ""), or(&p["name"], ""))
            }
        };
        Row::new()
            .cell("Name", shown)
            .cell("Controller", or(&spec["controller"], ""))
            .cell("Parameters", params)
    }
}
