//! The Kubernetes version Peapod speaks, as `/version` reports it.
//!
//! The API types are `k8s-openapi`'s `v1_33`; kubectl 1.32 is within the
//! supported skew of one minor version.

pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = concat!("v1.33.0-peapod.", env!("CARGO_PKG_VERSION"));
