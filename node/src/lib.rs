//! Peapod's node agent: joining a cluster, the agent that runs pods,
//! pod networking, and hollow nodes for testing the control plane at scale.

pub mod activator;
pub mod agent;
pub mod dns;
pub mod hollow;
pub mod ingress;
pub mod join;
pub mod lease;
pub mod network;
pub mod proxy;
pub mod traffic;
