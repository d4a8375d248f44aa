//! What every kind's rules must agree on, checked over the whole registry.

use std::collections::HashSet;

use serde_json::json;

use crate::resources::Catalog;
use crate::resources::table::{self, IncludeObject};

/// An object with nothing but a name: every row must still fill its cells.
fn bare() -> serde_json::Value {
    json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}})
}

#[test]
fn every_row_fills_exactly_its_kinds_columns() {
    let now = jiff::Timestamp::now();
    for rt in Catalog::global().all() {
        let columns = rt.rules.columns();
        let names: HashSet<&str> = columns.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), columns.len(), "{}: duplicate column", rt.kind);
        let row = rt.rules.row(&bare(), now);
        for cell in row.names() {
            assert!(names.contains(cell), "{}: no column {cell:?}", rt.kind);
        }
        for c in &columns {
            assert!(
                row.get(c.name).is_some() || matches!(c.name, "Name" | "Age"),
                "{}: column {:?} left empty",
                rt.kind,
                c.name
            );
        }
    }
}

#[test]
fn each_resource_is_served_once() {
    let mut seen = HashSet::new();
    for rt in Catalog::global().all() {
        assert!(
            seen.insert((rt.group, rt.version, rt.plural)),
            "{}/{} {} twice",
            rt.group,
            rt.version,
            rt.plural
        );
    }
}

#[test]
fn cells_land_under_their_columns() {
    let rt = Catalog::global()
        .lookup("apps", "v1", "deployments")
        .expect("deployments");
    let d = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1}});
    let t = table::table(rt, &[&d], json!({}), IncludeObject::None, true);
    let heads: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let cells = &t["rows"][0]["cells"];
    let at = |name: &str| &cells[heads.iter().position(|h| *h == name).unwrap()];
    assert_eq!(at("Name"), "web");
    assert_eq!(at("Ready"), "2/3");
    assert_eq!(at("Up-to-date"), 3);
    assert_eq!(at("Available"), 1);
    assert_eq!(at("Images"), "nginx");
    assert_eq!(at("Selector"), "app=web");
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
}

#[test]
fn the_same_name_in_two_groups_keeps_its_own_rules() {
    let catalog = Catalog::global();
    let core = catalog.lookup("", "v1", "services").unwrap();
    let knative = catalog
        .lookup("serving.knative.dev", "v1", "services")
        .unwrap();
    assert!(core.rules.columns().iter().any(|c| c.name == "Cluster-IP"));
    assert!(knative.rules.columns().iter().any(|c| c.name == "URL"));
    assert!(knative.rules.tracks_generation() && !core.rules.tracks_generation());
}
