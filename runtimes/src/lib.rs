//! Peapod's runtimes: images, OCI containers through libcontainer, and
//! Wasm containers through wasmtime. Nothing here knows about
//! Kubernetes objects: the node agent translates pods into these terms.

pub mod cgroups;
pub mod image;
pub mod logs;
pub mod oci;
pub mod wasm;
