//! One OpenAPI v3 document per group-version, as kube-apiserver serves at
//! `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use super::{REF_PREFIX, Schemas, references};
use crate::resources::{Catalog, ResourceType, Subresource};

pub struct Document {
    pub body: Vec<u8>,
    pub hash: String,
}

pub fn build_all(catalog: &Catalog, schemas: &Schemas) -> BTreeMap<String, Document> {
    catalog
        .group_versions()
        .into_iter()
        .map(|(group, version)| {
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let doc = build(catalog, schemas, group, version, &path);
            let body = serde_json::to_vec(&doc).expect("documents serialize");
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut hasher);
            let hash = format!("{:016X}", hasher.finish());
            (path, Document { body, hash })
        })
        .collect()
}

fn build(catalog: &Catalog, schemas: &Schemas, group: &str, version: &str, prefix: &str) -> Value {
    let mut paths = Map::new();
    let mut roots = Vec::new();
    for rt in catalog.in_group_version(group, version) {
        roots.push(rt.schema_name.clone());
        add_paths(&mut paths, rt, prefix);
        if rt.has(Subresource::Scale) {
            roots.push("io.k8s.api.autoscaling.v1.Scale".into());
        }
    }
    // Only the definitions this group-version reaches.
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut queue = roots;
    while let Some(name) = queue.pop() {
        if !wanted.insert(name.clone()) {
            continue;
        }
        if let Some(def) = schemas.definition(&name) {
            references(def, &mut queue);
        }
    }
    let components: Map<String, Value> = wanted
        .into_iter()
        .filter_map(|n| schemas.definition(&n).map(|d| (n, d.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": components},
    })
}

fn param(name: &str, location: &str) -> Value {
    let mut p =
        json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}});
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn body_ref(schema: &str) -> Value {
    json!({"schema": {"$ref": format!("{REF_PREFIX}{schema}")}})
}

fn operation(
    rt: &ResourceType,
    action: &str,
    schema: &str,
    gvk: &Value,
    extra_params: &[&str],
) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", rt.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": {"200": {"description": "OK", "content": {"application/json": body_ref(schema)}}},
        "parameters": extra_params.iter().map(|p| param(p, "query")).collect::<Vec<_>>(),
    });
    match action {
        "patch" => {
            op["requestBody"] = json!({"content": {
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            }, "required": true});
        }
        "post" | "put" => {
            op["requestBody"] = json!({"content": {"*/*": body_ref(schema)}, "required": true});
        }
        _ => {}
    }
    op
}

fn add_paths(paths: &mut Map<String, Value>, rt: &ResourceType, prefix: &str) {
    let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let base = if rt.namespaced {
        format!("/{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("/{prefix}/{}", rt.plural)
    };
    let write_params = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let patch_params = [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ];
    let schema = rt.schema_name.as_str();
    // Only the operations the resource serves (a review is create-only).
    let served = |ops: Vec<(&str, Value)>| -> Value {
        let kept: Map<String, Value> = ops
            .into_iter()
            .filter(|(verb, _)| rt.verbs.contains(verb))
            .map(|(verb, op)| {
                let method = match verb {
                    "list" | "get" => "get",
                    "create" => "post",
                    "update" => "put",
                    "deletecollection" | "delete" => "delete",
                    other => other,
                };
                (method.to_string(), op)
            })
            .collect();
        Value::Object(kept)
    };
    paths.insert(
        base.clone(),
        served(vec![
            (
                "list",
                operation(
                    rt,
                    "list",
                    schema,
                    &gvk,
                    &[
                        "labelSelector",
                        "fieldSelector",
                        "limit",
                        "continue",
                        "watch",
                        "resourceVersion",
                        "timeoutSeconds",
                    ],
                ),
            ),
            ("create", operation(rt, "post", schema, &gvk, &write_params)),
            (
                "deletecollection",
                operation(
                    rt,
                    "deletecollection",
                    schema,
                    &gvk,
                    &["labelSelector", "fieldSelector"],
                ),
            ),
        ]),
    );
    let named = served(vec![
        ("get", operation(rt, "get", schema, &gvk, &["pretty"])),
        ("update", operation(rt, "put", schema, &gvk, &write_params)),
        ("patch", operation(rt, "patch", schema, &gvk, &patch_params)),
        (
            "delete",
            operation(
                rt,
                "delete",
                schema,
                &gvk,
                &["dryRun", "gracePeriodSeconds", "propagationPolicy"],
            ),
        ),
    ]);
    if named.as_object().is_some_and(|m| !m.is_empty()) {
        paths.insert(format!("{base}/{{name}}"), named);
    }
    for sub in [Subresource::Status, Subresource::Scale] {
        if !rt.has(sub) {
            continue;
        }
        let (schema, gvk) = match sub {
            Subresource::Scale => (
                "io.k8s.api.autoscaling.v1.Scale",
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            ),
            _ => (schema, gvk.clone()),
        };
        paths.insert(
            format!("{base}/{{name}}/{}", sub.name()),
            json!({
                "get": operation(rt, "get", schema, &gvk, &["pretty"]),
                "put": operation(rt, "put", schema, &gvk, &write_params),
                "patch": operation(rt, "patch", schema, &gvk, &patch_params),
            }),
        );
    }
}
