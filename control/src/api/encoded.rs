//! Serialized objects, cached by revision. Every stored state of every
//! object has its own revision, so the JSON of an object at a revision
//! never changes: a watch event going to many watchers, or an object listed
//! again and again, is serialized once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;

use crate::store::revision_of;

pub struct EncodedCache {
    inner: Mutex<(HashMap<u64, Bytes>, VecDeque<u64>)>,
    capacity: usize,
}

impl EncodedCache {
    pub fn new(capacity: usize) -> EncodedCache {
        EncodedCache {
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity,
        }
    }

    /// The JSON of a stored object.
    pub fn json(&self, object: &Value) -> Bytes {
        let revision = revision_of(object);
        if revision == 0 {
            return serde_json::to_vec(object).unwrap_or_default().into();
        }
        if let Some(b) = self.inner.lock().expect("cache lock").0.get(&revision) {
            return b.clone();
        }
        let bytes: Bytes = serde_json::to_vec(object).unwrap_or_default().into();
        let mut inner = self.inner.lock().expect("cache lock");
        let (map, order) = &mut *inner;
        if map.insert(revision, bytes.clone()).is_none() {
            order.push_back(revision);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        bytes
    }
}

/// `{"type":"<kind>","object":<json>}\n` without re-serializing the object.
pub fn watch_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    line.into()
}

/// A list object whose items are already serialized.
pub fn list(kind: &str, api_version: &str, metadata: &Value, items: &[Bytes]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(items.iter().map(Bytes::len).sum::<usize>() + items.len() + 128);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(serde_json::to_string(kind).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(
        serde_json::to_string(api_version)
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(&serde_json::to_vec(metadata).unwrap_or_default());
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cached_encodings_are_valid_json() {
        let cache = EncodedCache::new(2);
        let a = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = cache.json(&a);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), a);
        let line = watch_line("ADDED", &bytes);
        let v: Value = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
        assert_eq!(v["object"], a);
        let l = list(
            "ConfigMapList",
            "v1",
            &json!({"resourceVersion": "9"}),
            &[bytes.clone(), bytes],
        );
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        for rv in 6..10 {
            cache.json(&json!({"metadata": {"resourceVersion": rv.to_string()}}));
        }
        assert!(cache.inner.lock().unwrap().0.len() <= 2);
    }
}
