//! OpenAPI schemas of the served kinds, generated from `k8s-openapi`'s
//! schemars support: served as OpenAPI v3 documents (what kubectl's strict
//! validation, `explain` and client-side apply read) and walked by the
//! server itself for unknown-field detection and strategic merge patch.

mod document;
mod unknown;
pub mod v2;

pub use unknown::unknown_fields;

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::patch::strategies::PATCH_FIELDS;
use crate::resources::Catalog;

const REF_PREFIX: &str = "#/components/schemas/";

/// Every schema definition, by name, with Kubernetes' extensions added.
pub struct Schemas {
    defs: Map<String, Value>,
    /// Served documents by group-version path (`api/v1`, `apis/apps/v1`).
    documents: BTreeMap<String, document::Document>,
}

impl Schemas {
    /// The schemas of the global catalog, generated once.
    pub fn global() -> &'static Schemas {
        static SCHEMAS: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();
        SCHEMAS.get_or_init(|| Schemas::new(Catalog::global()))
    }

    pub fn new(catalog: &Catalog) -> Schemas {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut roots = Vec::new();
        for rt in catalog.all() {
            let schema = (rt.schema)(&mut generator);
            roots.push((rt.schema_name.clone(), schema));
        }
        // The Scale subresource's body.
        let scale = <k8s_openapi::api::autoscaling::v1::Scale as schemars::JsonSchema>::json_schema(
            &mut generator,
        );
        roots.push(("io.k8s.api.autoscaling.v1.Scale".into(), scale));
        for (name, schema) in roots {
            generator.definitions_mut().insert(name, schema.to_value());
        }
        let mut defs = generator.take_definitions(true);

        for rt in catalog.all() {
            if let Some(def) = defs.get_mut(&rt.schema_name).and_then(Value::as_object_mut) {
                def.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]),
                );
            }
        }
        if let Some(def) = defs
            .get_mut("io.k8s.api.autoscaling.v1.Scale")
            .and_then(Value::as_object_mut)
        {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": "autoscaling", "version": "v1", "kind": "Scale"}]),
            );
        }
        for f in PATCH_FIELDS {
            let Some(prop) = defs
                .get_mut(f.schema)
                .and_then(|d| d.get_mut("properties"))
                .and_then(|p| p.get_mut(f.field))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            prop.insert("x-kubernetes-patch-strategy".into(), json!(f.strategy));
            if let Some(key) = f.merge_key {
                prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
        let mut schemas = Schemas {
            defs,
            documents: BTreeMap::new(),
        };
        schemas.documents = document::build_all(catalog, &schemas);
        schemas
    }

    /// A definition by its schema name.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// A definition and its stored name.
    pub fn definition_entry(&self, name: &str) -> Option<(&str, &Value)> {
        self.defs.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// Follows `$ref` (plain, or wrapped in a one-element `allOf` as
    /// OpenAPI v3 writes a reference with a description) to the definition.
    /// Returns the definition name when one was followed.
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
        let reference = schema.get("$ref").or_else(|| {
            schema
                .get("allOf")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0].get("$ref"))
        });
        match reference
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        {
            Some(name) => match self.defs.get(name) {
                Some(def) => (def, Some(name)),
                None => (schema, None),
            },
            None => (schema, None),
        }
    }

    /// The schema of property `name` of an object schema.
    pub fn property<'a>(&'a self, schema: &'a Value, name: &str) -> Option<&'a Value> {
        self.resolve(schema).0.get("properties")?.get(name)
    }

    /// The OpenAPI v3 discovery document (`GET /openapi/v3`).
    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .documents
            .iter()
            .map(|(path, doc)| {
                (
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
                )
            })
            .collect();
        json!({ "paths": paths })
    }

    /// The document for one group-version path, as JSON bytes, and its hash.
    pub fn document(&self, path: &str) -> Option<(&[u8], &str)> {
        self.documents
            .get(path)
            .map(|d| (d.body.as_slice(), d.hash.as_str()))
    }
}

/// References (`$ref` names) used anywhere inside a schema.
fn references(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Some(name) = v.as_str().and_then(|r| r.strip_prefix(REF_PREFIX))
                {
                    out.push(name.to_string());
                } else {
                    references(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
