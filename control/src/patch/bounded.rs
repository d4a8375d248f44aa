//! RFC 6902 JSON patch with bounded work. A small patch body can ask for a
//! huge result: each `copy` of the document into itself doubles it, and
//! copies into deeper paths nest it past what any JSON reader accepts. As
//! kube-apiserver does, the operation count and the bytes copied are capped,
//! and (our addition) the nesting the result would reach is refused before
//! the operation runs, so the server never builds the document it rejects.

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use super::PatchError;
use crate::limits::{self, MAX_DEPTH, MAX_OBJECT_BYTES};

/// kube-apiserver's limit on the operations in one JSON patch.
const MAX_OPERATIONS: usize = 10_000;

/// How many bytes of the document may be measured while checking moves.
const MAX_MEASURED_BYTES: usize = 16 * MAX_OBJECT_BYTES;

/// Applies `ops` to a copy of `current`.
pub fn json_patch(current: &Value, ops: &Patch) -> Result<Value, PatchError> {
    if ops.0.len() > MAX_OPERATIONS {
        return Err(PatchError::too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = current.clone();
    // An upper bound on the document's depth, kept through the operations:
    // what an operation adds sits at its path's depth plus its own.
    let mut bound = limits::depth(&doc);
    let mut copied = 0usize;
    let mut measured = 0usize;
    for op in &ops.0 {
        let added = match op {
            PatchOperation::Add(add) => add.path.count() + limits::depth(&add.value),
            PatchOperation::Replace(r) => r.path.count() + limits::depth(&r.value),
            PatchOperation::Copy(copy) => {
                let Some(from) = doc.pointer(copy.from.as_str()) else {
                    return Err(unapplicable(format!("path {} does not exist", copy.from)));
                };
                copied += limits::size(from);
                if copied > MAX_OBJECT_BYTES {
                    return Err(PatchError::too_large(format!(
                        "the JSON patch copies more than {MAX_OBJECT_BYTES} bytes"
                    )));
                }
                copy.path.count() + limits::depth(from)
            }
            PatchOperation::Move(mv) => {
                // Moving is cheap; measure the moved value only when the
                // cheap estimate says the result might be too deep.
                let estimate = (bound + mv.path.count()).saturating_sub(mv.from.count());
                if estimate <= MAX_DEPTH {
                    estimate
                } else {
                    let Some(from) = doc.pointer(mv.from.as_str()) else {
                        return Err(unapplicable(format!("path {} does not exist", mv.from)));
                    };
                    measured += limits::size(from);
                    if measured > MAX_MEASURED_BYTES {
                        return Err(PatchError::too_large(
                            "the JSON patch moves too much of the object too deep",
                        ));
                    }
                    mv.path.count() + limits::depth(from)
                }
            }
            PatchOperation::Remove(_) | PatchOperation::Test(_) => 0,
        };
        bound = bound.max(added);
        if bound > MAX_DEPTH {
            return Err(PatchError::unprocessable(format!(
                "the JSON patch would nest the object {bound} levels deep; at most {MAX_DEPTH} are allowed"
            )));
        }
        // One at a time on our own copy: a failed operation discards `doc`,
        // so the undo log of `json_patch::patch` is not needed.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op))
            .map_err(|e| unapplicable(e.to_string()))?;
    }
    Ok(doc)
}

fn unapplicable(why: String) -> PatchError {
    PatchError::unprocessable(format!("the JSON patch could not be applied: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Patch {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_ordinary_patch_applies() {
        let doc =
            json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let out = json_patch(
            &doc,
            &ops(json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "copy", "from": "/metadata/labels", "path": "/spec/selector"},
                {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/b"},
                {"op": "test", "path": "/spec/replicas", "value": 3},
                {"op": "remove", "path": "/metadata/name"}
            ])),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "1"}}, "spec": {"replicas": 3, "selector": {"a": "1"}}})
        );
    }

    #[test]
    fn a_failed_operation_is_unprocessable_and_leaves_the_object() {
        let doc = json!({"a": 1});
        let e = json_patch(
            &doc,
            &ops(json!([{"op": "test", "path": "/a", "value": 2}])),
        )
        .unwrap_err();
        assert_eq!(e.status, 422);
        let e = json_patch(
            &doc,
            &ops(json!([{"op": "copy", "from": "/x", "path": "/y"}])),
        )
        .unwrap_err();
        assert_eq!(e.status, 422, "{}", e.message);
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn copies_that_double_the_object_are_too_large() {
        // 64 KiB grows past 3 MiB in six doublings; the patch is 40 copies.
        let doc = json!({"a": {"x": "y".repeat(64 * 1024)}});
        let chain: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "/a", "path": format!("/a/c{i}")}))
            .collect();
        let e = json_patch(&doc, &ops(Value::Array(chain))).unwrap_err();
        assert_eq!(e.status, 413, "{}", e.message);
        assert!(
            e.message.starts_with("Request entity too large"),
            "{}",
            e.message
        );
    }

    #[test]
    fn copies_into_themselves_cannot_nest_the_object_too_deep() {
        // Each copy of /a into /a/a deepens the object by one level.
        let chain: Vec<Value> = (0..200)
            .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/a"}))
            .collect();
        let e = json_patch(&json!({"a": {}}), &ops(Value::Array(chain))).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("levels deep"), "{}", e.message);
    }

    #[test]
    fn deep_values_and_deep_moves_are_refused() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        let e = json_patch(
            &json!({}),
            &ops(json!([{"op": "add", "path": "/a", "value": deep}])),
        )
        .unwrap_err();
        assert_eq!(e.status, 422);
        // A value 99 deep moved two levels down goes past the limit.
        let mut doc = json!({"b": {"c": {}}});
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            v = json!([v]);
        }
        doc["a"] = v;
        let e = json_patch(
            &doc,
            &ops(json!([{"op": "move", "from": "/a", "path": "/b/c/a"}])),
        )
        .unwrap_err();
        assert_eq!(e.status, 422);
        // The same value moved sideways is fine.
        json_patch(
            &doc,
            &ops(json!([{"op": "move", "from": "/a", "path": "/z"}])),
        )
        .unwrap();
    }

    #[test]
    fn too_many_operations_are_refused() {
        let many: Vec<Value> = (0..MAX_OPERATIONS + 1)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let e = json_patch(&json!({}), &ops(Value::Array(many))).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.message.contains("10000, got 10001"), "{}", e.message);
    }
}
