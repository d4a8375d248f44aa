//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for with
//! `Accept: application/json;as=Table`, with the columns each kind names
//! (`Kind::columns`) and the cells its rows fill in by column name
//! (`Kind::row`). The server always sends every column; kubectl hides the
//! wide (priority 1) columns unless `-o wide`.

mod format;

pub use format::{
    condition_true, containers, first_of_type, human_duration, int, labels, lb_addresses, or,
    selector, selector_string, since,
};

use serde_json::{Value, json};

use super::ResourceType;

/// One column of a kind's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type of its cells: `string`, `integer`, `boolean`, `date`.
    pub ty: &'static str,
    /// Shown only with `-o wide`.
    pub wide: bool,
}

impl Column {
    pub const fn text(name: &'static str) -> Column {
        Column {
            name,
            ty: "string",
            wide: false,
        }
    }

    pub const fn int(name: &'static str) -> Column {
        Column {
            ty: "integer",
            ..Column::text(name)
        }
    }

    pub const fn boolean(name: &'static str) -> Column {
        Column {
            ty: "boolean",
            ..Column::text(name)
        }
    }

    pub const fn date(name: &'static str) -> Column {
        Column {
            ty: "date",
            ..Column::text(name)
        }
    }

    /// The same column, shown only with `-o wide`.
    pub const fn wide(self) -> Column {
        Column { wide: true, ..self }
    }
}

pub const NAME: Column = Column::text("Name");
pub const AGE: Column = Column::text("Age");
/// A workload's wide columns: its template's containers and images, its selector.
pub const CONTAINERS: Column = Column::text("Containers").wide();
pub const IMAGES: Column = Column::text("Images").wide();
pub const SELECTOR: Column = Column::text("Selector").wide();

/// One object's cells, by column name, and its row conditions.
#[derive(Debug, Default)]
pub struct Row {
    cells: Vec<(&'static str, Value)>,
    conditions: Option<Value>,
}

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    /// Sets the cell of `column`.
    pub fn cell(mut self, column: &'static str, value: impl Into<Value>) -> Row {
        self.cells.push((column, value.into()));
        self
    }

    /// The Containers and Images cells of a pod template's spec.
    pub fn containers(self, pod_spec: &Value) -> Row {
        let (names, images) = containers(&pod_spec["containers"]);
        self.cell("Containers", names).cell("Images", images)
    }

    /// Row conditions (`Completed` on a finished pod).
    pub fn conditions(mut self, conditions: Value) -> Row {
        self.conditions = Some(conditions);
        self
    }

    /// The cell of `column`, if the row set it.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.cells
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, v)| v)
    }

    /// The columns this row set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.cells.iter().map(|(c, _)| *c)
    }

    fn take(&mut self, column: &str) -> Option<Value> {
        let i = self.cells.iter().position(|(c, _)| *c == column)?;
        Some(self.cells.swap_remove(i).1)
    }
}

/// The cell of a column every kind shares, when the row left it out.
fn standard_cell(column: &str, object: &Value, now: jiff::Timestamp) -> Value {
    match column {
        "Name" => object["metadata"]["name"].clone(),
        "Age" => json!(since(&object["metadata"]["creationTimestamp"], now)),
        _ => json!(""),
    }
}

fn column_definitions(columns: &[Column]) -> Value {
    columns
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.ty, "format": format,
                "description": describe(c.name), "priority": u8::from(c.wide)})
        })
        .collect()
}

fn describe(column: &str) -> String {
    match column {
        "Name" => "Name must be unique within a namespace.".into(),
        "Age" => "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        other => format!("{other} of the object."),
    }
}

/// What each row carries as `object` (`?includeObject=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<IncludeObject, String> {
        match s.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: {other:?}: must be 'Metadata', 'Object', 'None', or empty"
            )),
        }
    }
}

/// The cells of one object, in column order, and its row conditions.
pub fn cells(
    rt: &ResourceType,
    columns: &[Column],
    object: &Value,
    now: jiff::Timestamp,
) -> (Vec<Value>, Option<Value>) {
    let mut row = rt.rules.row(object, now);
    let cells = columns
        .iter()
        .map(|c| {
            row.take(c.name)
                .unwrap_or_else(|| standard_cell(c.name, object, now))
        })
        .collect();
    (cells, row.conditions)
}

/// A Table of `objects`; `headers` false leaves out column definitions (as
/// on every watch event after the first).
pub fn table(
    rt: &ResourceType,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let columns = rt.rules.columns();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, conditions) = cells(rt, &columns, o, now);
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Object => (*o).clone(),
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }),
            };
            let mut r = json!({"cells": cells, "object": object});
            if let Some(c) = conditions {
                r["conditions"] = c;
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if headers { column_definitions(&columns) } else { Value::Null },
        "rows": rows,
    })
}
