//! Cases from Kubernetes' documented strategic-merge behaviour.

use serde_json::{Value, json};

use super::*;
use crate::openapi::Schemas;

fn schemas() -> &'static Schemas {
    Schemas::global()
}

fn pod_spec(original: Value, patch: Value) -> Value {
    let s = Schema::named(schemas(), "io.k8s.api.core.v1.PodSpec");
    apply(&original, &patch, s).unwrap()
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn containers(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "image": "i"}))
            .collect(),
    )
}

#[test]
fn new_list_element_goes_before_remaining_live_elements() {
    let out = pod_spec(
        json!({"containers": containers(&["a"])}),
        json!({"containers": [{"name": "x", "image": "j"}]}),
    );
    assert_eq!(names(&out, "containers"), ["x", "a"]);
}

#[test]
fn merge_by_name_keeps_modified_element_in_place() {
    let out = pod_spec(
        json!({"containers": containers(&["A", "B", "C"])}),
        json!({"containers": [{"name": "B", "image": "n"}]}),
    );
    assert_eq!(names(&out, "containers"), ["A", "B", "C"]);
    assert_eq!(out["containers"][1]["image"], "n");
}

#[test]
fn patch_order_wins_for_named_elements() {
    let out = pod_spec(
        json!({"containers": containers(&["A", "B", "C"])}),
        json!({"containers": [{"name": "C"}, {"name": "X"}, {"name": "A"}]}),
    );
    assert_eq!(names(&out, "containers"), ["B", "C", "X", "A"]);
}

#[test]
fn delete_directive_removes_by_merge_key() {
    let out = pod_spec(
        json!({"containers": containers(&["A", "B", "C"])}),
        json!({"containers": [{"name": "X"}, {"name": "B", "$patch": "delete"}]}),
    );
    assert_eq!(names(&out, "containers"), ["X", "A", "C"]);
}

#[test]
fn replace_directive_replaces_the_list() {
    let out = pod_spec(
        json!({"containers": containers(&["A", "B"])}),
        json!({"containers": [{"name": "Z"}, {"$patch": "replace"}]}),
    );
    assert_eq!(names(&out, "containers"), ["Z"]);
}

#[test]
fn atomic_lists_are_replaced_whole() {
    let out = pod_spec(
        json!({"tolerations": [{"key": "a"}, {"key": "b"}]}),
        json!({"tolerations": [{"key": "c"}]}),
    );
    assert_eq!(out["tolerations"], json!([{"key": "c"}]));
}

#[test]
fn null_deletes_and_maps_merge() {
    let out = pod_spec(
        json!({"nodeSelector": {"a": "1", "b": "2"}, "hostname": "h"}),
        json!({"nodeSelector": {"a": null, "c": "3"}, "hostname": null}),
    );
    assert_eq!(out, json!({"nodeSelector": {"b": "2", "c": "3"}}));
}

#[test]
fn nested_env_merges_inside_container() {
    let out = pod_spec(
        json!({"containers": [{"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}),
        json!({
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "image": "v2", "$setElementOrder/env": [{"name": "A"}], "env": [{"name": "B", "$patch": "delete"}]}]
        }),
    );
    assert_eq!(
        out["containers"],
        json!([{"name": "app", "image": "v2", "env": [{"name": "A", "value": "1"}]}])
    );
}

#[test]
fn set_element_order_reorders_primitive_lists() {
    let meta = Schema::named(schemas(), "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    let out = apply(
        &json!({"finalizers": ["1", "2", "4"]}),
        &json!({"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]}),
        meta,
    )
    .unwrap();
    assert_eq!(out["finalizers"], json!(["1", "2", "3", "4"]));
    let out = apply(
        &json!({"finalizers": ["a", "b", "c"]}),
        &json!({"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}),
        meta,
    )
    .unwrap();
    assert_eq!(out["finalizers"], json!(["a", "c"]));
    let out = apply(
        &json!({"finalizers": ["a", "b"]}),
        &json!({"finalizers": ["c"]}),
        meta,
    )
    .unwrap();
    assert_eq!(out["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn add_and_delete_in_one_ordered_patch_matches_kubernetes() {
    // Upstream's "add map and delete map from merging list" case.
    let out = pod_spec(
        json!({"containers": [{"name": "1"}, {"name": "2", "image": "b"}, {"name": "4", "image": "c"}]}),
        json!({
            "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]
        }),
    );
    assert_eq!(names(&out, "containers"), ["2", "4", "3"]);
}

#[test]
fn retain_keys_clears_the_old_union_member() {
    let s = Schema::named(schemas(), "io.k8s.api.apps.v1.DeploymentSpec");
    let out = apply(
        &json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
        &json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}),
        s,
    )
    .unwrap();
    assert_eq!(out["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn malformed_patches_are_errors_not_panics() {
    let s = Schema::named(schemas(), "io.k8s.api.core.v1.PodSpec");
    for patch in [
        json!({"containers": [{"image": "no-name"}]}),
        json!({"containers": [{"name": "a", "$patch": "merge"}]}),
        json!({"$patch": "bogus"}),
        json!({"containers": [[1]]}),
        json!({"$setElementOrder/containers": "x"}),
        json!({"strategy": {"$retainKeys": "x"}}),
    ] {
        let r = apply(&json!({"containers": containers(&["a"])}), &patch, s);
        assert!(r.is_err() || patch.get("strategy").is_some(), "{patch}");
    }
}
