//! Peapod's runtimes: images, OCI containers through libcontainer, and
//! (to come) Wasm containers through wasmtime.

pub mod image;
