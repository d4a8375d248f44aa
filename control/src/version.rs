//! The Kubernetes version Peapod speaks, as `/version` reports it.
//!
//! Peapod answers as 1.32, the kubectl it is tested with (kubectl's version
//! dispatcher picks its client by the server's minor version). The API types
//! come from `k8s-openapi`'s `v1_33`, a superset of 1.32's.

pub const MAJOR: &str = "1";
pub const MINOR: &str = "32";
pub const GIT_VERSION: &str = concat!("v1.32.0-peapod.", env!("CARGO_PKG_VERSION"));
