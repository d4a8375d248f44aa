//! Events.

use k8s_openapi::api::core::v1 as core;
use serde_json::Value;

use super::{Kind, NONE};
use crate::resources::fields::Field;
use crate::resources::table::{Column, Row, int, or, since};
use crate::resources::{ResourceType, served};

#[derive(Debug)]
pub struct Event;

impl Kind for Event {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![served::<core::Event>(self, &["ev"], NONE, &[])]
    }

    fn fields(&self) -> &'static [Field] {
        const FIELDS: &[Field] = &[
            Field::new("involvedObject.kind", "/involvedObject/kind"),
            Field::new("involvedObject.namespace", "/involvedObject/namespace"),
            Field::new("involvedObject.name", "/involvedObject/name"),
            Field::new("involvedObject.uid", "/involvedObject/uid"),
            Field::new("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            Field::new(
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            Field::new("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            Field::new("reason", "/reason"),
            Field::new("reportingComponent", "/reportingComponent"),
            Field::new("source", "/source/component"),
            Field::new("type", "/type"),
        ];
        FIELDS
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::text("Last Seen"),
            Column::text("Type"),
            Column::text("Reason"),
            Column::text("Object"),
            Column::text("Subobject").wide(),
            Column::text("Source").wide(),
            Column::text("Message"),
            Column::text("First Seen").wide(),
            Column::text("Count").wide(),
            Column::text("Name").wide(),
        ]
    }

    fn row(&self, o: &Value, now: jiff::Timestamp) -> Row {
        let first = if o["firstTimestamp"].is_string() {
            since(&o["firstTimestamp"], now)
        } else {
            since(&o["eventTime"], now)
        };
        let mut last = if o["lastTimestamp"].is_string() {
            since(&o["lastTimestamp"], now)
        } else {
            first.clone()
        };
        let mut count = int(&o["count"]);
        if o["series"].is_object() {
            last = since(&o["series"]["lastObservedTime"], now);
            count = int(&o["series"]["count"]);
        } else if count == 0 {
            count = 1;
        }
        let io = &o["involvedObject"];
        let kind = io["kind"].as_str().unwrap_or_default().to_lowercase();
        let object = match io["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => format!("{kind}/{n}"),
            None => kind,
        };
        let comp = o["source"]["component"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(o["reportingComponent"].as_str())
            .unwrap_or_default();
        let inst = o["source"]["host"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or(o["reportingInstance"].as_str())
            .unwrap_or_default();
        let source = if inst.is_empty() {
            comp.to_string()
        } else {
            format!("{comp}, {inst}")
        };
        Row::new()
            .cell("Last Seen", last)
            .cell("Type", or(&o["type"], ""))
            .cell("Reason", or(&o["reason"], ""))
            .cell("Object", object)
            .cell("Subobject", or(&io["fieldPath"], ""))
            .cell("Source", source)
            .cell("Message", o["message"].as_str().unwrap_or_default().trim())
            .cell("First Seen", first)
            .cell("Count", count)
    }
}
