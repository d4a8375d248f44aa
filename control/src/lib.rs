//! Peapod's control plane: the Kubernetes API server, the store behind it,
//! and the loops that run inside the control plane.

pub mod admission;
pub mod api;
pub mod authz;
pub mod controllers;
pub mod error;
pub mod kinds;
pub mod limits;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod resources;
pub mod scheduler;
pub mod selector;
pub mod server;
pub mod store;
pub mod tokens;
pub mod users;
pub mod version;
