//! One run of a container, whichever runtime runs it: an OCI container
//! owned by its shim process (survives the agent), or a Wasm instance on
//! the pod's own async runtime inside the agent (does not).

use std::sync::Arc;

use peapod_runtimes::oci::Running;

#[derive(Clone, Debug)]
pub enum Run {
    Oci(Running),
    Wasm(WasmRun),
}

/// A Wasm container's run.
#[derive(Clone, Debug)]
pub struct WasmRun {
    pub id: String,
    pub started_at: String,
    /// Asks the instance to stop; Wasm guests get no signals, so it ends at
    /// once.
    pub stop: Arc<tokio::sync::Notify>,
    /// Its CPU and memory, as wasmtime's meters count them.
    pub usage: Arc<peapod_runtimes::wasm::Usage>,
    /// An HTTP function's request counters.
    pub http: Option<Arc<peapod_runtimes::wasm::HttpStats>>,
}

impl Run {
    pub fn id(&self) -> &str {
        match self {
            Run::Oci(r) => &r.id,
            Run::Wasm(w) => &w.id,
        }
    }

    pub fn started_at(&self) -> &str {
        match self {
            Run::Oci(r) => &r.started_at,
            Run::Wasm(w) => &w.started_at,
        }
    }

    pub fn is_wasm(&self) -> bool {
        matches!(self, Run::Wasm(_))
    }
}
