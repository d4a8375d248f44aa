//! Peapod's node agent: joining a cluster, pod networking, and hollow
//! nodes for testing the control plane at scale.

pub mod hollow;
pub mod join;
pub mod network;
