//! How big and how deep an object may be, measured without recursion so
//! that measuring a hostile document cannot exhaust the stack.
//!
//! The depth bound keeps every stored object readable: serde_json (in the
//! store's reload, in our own clients, in kube-rs) refuses documents nested
//! deeper than 128, and a watch event or a list wraps an object in two more
//! levels. The size bound keeps every object small enough to be sent back
//! in a request body, as kube-apiserver's etcd limit does.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The deepest nesting of arrays and objects a stored object may have.
pub const MAX_DEPTH: usize = 100;

/// The largest stored object, as JSON: kube-apiserver's request body limit
/// (3 MiB), which is also ours.
pub const MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;

/// How deeply `v` nests arrays and objects (a scalar is 0, `{}` is 1).
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// About how many bytes `v` takes as compact JSON (escapes not counted).
pub fn size(v: &Value) -> usize {
    let mut total = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(n) => n.to_string().len(),
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items.iter());
                items.len().max(1) + 1
            }
            Value::Object(map) => {
                stack.extend(map.values());
                map.keys().map(|k| k.len() + 4).sum::<usize>() + 2
            }
        };
    }
    total
}

/// Refuses an object that could not be stored and read back.
pub fn check(object: &Value) -> ApiResult<()> {
    let d = depth(object);
    if d > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "the object nests {d} levels deep; at most {MAX_DEPTH} are allowed"
        )));
    }
    let bytes = size(object);
    if bytes > MAX_OBJECT_BYTES {
        return Err(ApiError::too_large(format!(
            "Request entity too large: the object is {bytes} bytes; limit is {MAX_OBJECT_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}]})), 4);
    }

    #[test]
    fn size_is_close_to_the_json_length() {
        let v = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "n": [1, 22, null, true]});
        let exact = serde_json::to_vec(&v).unwrap().len();
        let estimate = size(&v);
        assert!(
            estimate.abs_diff(exact) <= exact / 4,
            "{estimate} vs {exact}"
        );
    }

    #[test]
    fn a_deep_document_is_measured_without_recursion() {
        // Deep enough to overflow the stack of a recursive walk; built and
        // torn down by hand since serde_json's own drop recurses.
        let mut v = json!({});
        for _ in 0..200_000 {
            // Not `json!`, which would serialize `v` again (recursively).
            let mut outer = serde_json::Map::new();
            outer.insert("a".into(), v);
            v = Value::Object(outer);
        }
        assert_eq!(depth(&v), 200_001);
        let e = check(&v).unwrap_err();
        assert_eq!(e.code, 400);
        let mut cur = v;
        while let Value::Object(mut m) = cur {
            cur = m.remove("a").unwrap_or(Value::Null);
        }
    }

    #[test]
    fn a_large_object_is_too_large() {
        let v = json!({"data": "x".repeat(MAX_OBJECT_BYTES)});
        assert_eq!(check(&v).unwrap_err().code, 413);
        check(&json!({"data": "x".repeat(1000)})).unwrap();
    }
}
