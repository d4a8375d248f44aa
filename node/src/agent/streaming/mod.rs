//! What the node streams to the API server for `kubectl logs`, `exec`,
//! `attach` and `port-forward`. The runtimes give it a run's log file, an
//! exec'd process or attach socket (`peapod_runtimes::oci`), and the pod's
//! IP; everything about the wire (WebSocket channels, SPDY/3.1) is here.

pub mod attach;
pub mod exec;
pub mod logs;
pub mod portforward;
mod spdy;
