//! Loops that run inside the control plane.

pub mod namespace;
