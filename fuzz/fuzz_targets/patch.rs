//! A patch of each type (JSON, merge, strategic merge, apply) against a
//! document: the input is the type, then the document and the patch split
//! at the first 0xff byte (a Pod when the document does not parse). The
//! patch applies or is refused within the bounds, without a panic, a stack
//! overflow or work that grows past what the body could ask for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peapod_control::limits;
use peapod_control::openapi::Schemas;
use peapod_control::patch::{self, PatchType, Schema};
use serde_json::{Value, json};

const TYPES: [PatchType; 4] = [
    PatchType::Json,
    PatchType::Merge,
    PatchType::Strategic,
    PatchType::Apply,
];

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "a"}},
        "spec": {"containers": [
            {"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
             "env": [{"name": "A", "value": "1"}]}
        ]}
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let kind = TYPES[usize::from(which) % TYPES.len()];
    let (document, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let current = serde_json::from_slice(document)
        .ok()
        .filter(|d| limits::check(d).is_ok())
        .unwrap_or_else(pod);
    let Ok(patch) = patch::parse(kind, body) else {
        return;
    };
    if limits::check(&patch).is_err() {
        return;
    }
    let schema = Schema::named(Schemas::global(), "io.k8s.api.core.v1.Pod");
    if let Ok(patched) = patch::apply(kind, &current, &patch, schema) {
        let _ = limits::check(&patched);
    }
});
