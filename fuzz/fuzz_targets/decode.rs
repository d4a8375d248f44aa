//! A request body in any of the three encodings the API server reads: it
//! decodes or is refused, and what decodes passes or fails the object
//! bounds, without a panic, a stack overflow or unbounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peapod_control::api::codec;
use peapod_control::limits;

const TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if let Ok(object) = codec::decode(TYPES[usize::from(which) % TYPES.len()], body) {
        let _ = limits::check(&object);
    }
});
