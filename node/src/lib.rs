//! Peapod's node agent. So far: joining a cluster with a node token, and
//! hollow nodes for testing the control plane at scale.

pub mod hollow;
pub mod join;
