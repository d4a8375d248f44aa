//! Wasm containers: WASI preview 2 components (`wasm32-wasip2`) run inside
//! the agent's process with wasmtime.
//!
//! One [`WasmRuntime`] per node owns the engine (async, epoch interruption
//! driven by one shared ticker thread) and a linker with all of
//! `wasi:cli/command` plus `wasi:http`. [`WasmRuntime::load`] compiles a
//! component, or maps the compiled code cached on disk under its image
//! digest, and pre-instantiates it. A loaded component then runs in one of
//! two shapes:
//!
//! - a command (`wasi:cli/run`): [`WasmRuntime::run_command`] runs it to
//!   the end and reports its exit code, whether it hit its memory limit,
//!   and the trap if it crashed;
//! - an HTTP function (`wasi:http/incoming-handler`):
//!   [`WasmRuntime::serve_http`] serves it on a listener, with a fresh
//!   instance per request, like `wasmtime serve`.
//!
//! Both write the guest's stdout and stderr to a CRI-format container log
//! as the output is produced. Memory limits are enforced by a
//! `ResourceLimiter` per store (a grow past the limit traps), CPU limits by
//! throttling at epoch ticks; every running guest yields to the executor at
//! each tick, so a guest in an endless loop cannot hold a worker thread.
//!
//! Nothing here knows about network namespaces: sockets the guest opens
//! are created on whichever thread polls it, so the node agent runs these
//! futures on a runtime whose threads are in the pod's network namespace.
//! That runtime needs its time driver (`enable_all`): CPU throttling sleeps
//! with `tokio::time`.
//!
//! ```ignore
//! let runtime = WasmRuntime::new("/var/lib/peapod/wasm-cache")?;
//! let loaded = tokio::task::spawn_blocking({
//!     let runtime = runtime.clone();
//!     move || runtime.load(&image.digest, &wasm_path)
//! }).await??;
//! let outcome = runtime.run_command(&loaded, CommandConfig { args, log, ..Default::default() }).await?;
//! ```

mod command;
mod engine;
mod http;
mod limits;
mod output;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use self::command::{EXIT_OOM, EXIT_TRAP};
use self::engine::WasmEngine;
pub use self::http::HttpStats;
pub use self::limits::Usage;
use self::store::Host;

#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("creating the Wasm engine: {0}")]
    Engine(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{}: not a WebAssembly binary", .path.display())]
    NotWasm { path: PathBuf },
    #[error(
        "{}: a core WebAssembly module; only components (built for wasm32-wasip2) are supported",
        .path.display()
    )]
    CoreModule { path: PathBuf },
    #[error("{}: invalid component: {message}", .path.display())]
    Compile { path: PathBuf, message: String },
    #[error("the component needs imports this node does not provide: {0}")]
    Link(String),
    #[error("the component exports neither wasi:cli/run nor wasi:http/incoming-handler")]
    NoEntryPoint,
    #[error("the component does not export wasi:cli/run")]
    NotACommand,
    #[error("the component does not export wasi:http/incoming-handler")]
    NotAnHttpHandler,
    #[error(
        "the node's Wasm instance pool is full ({0} instances run); \
         a larger pool is set with --wasm-instance-pool"
    )]
    PoolFull(u32),
    #[error("preopening {} as {guest}: {message}", .host.display())]
    Preopen {
        host: PathBuf,
        guest: String,
        message: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WasmError {
    let context = context.into();
    move |source| WasmError::Io { context, source }
}

/// Which sockets a guest may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// TCP, UDP and name lookups, on the network of the threads that run it
    /// (the pod's network namespace).
    #[default]
    Pod,
    /// No sockets at all (outgoing `wasi:http` still works).
    None,
}

/// How the engine allocates instances.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Use wasmtime's pooling allocator sized for this many concurrent
    /// component instances (running commands plus in-flight requests).
    /// Address space for the whole pool is reserved up front (about 8 GiB
    /// per instance, never backed unless used), and a slot once used keeps
    /// the pages its instances touched, up to 4 MiB, for the next one: a
    /// burst of N concurrent requests leaves up to N × 4 MiB resident.
    /// Requests beyond the pool wait for a free slot; a command that finds
    /// the pool full fails to start.
    /// `None`: allocate on demand, which maps and unmaps every instance's
    /// memory: each unmap flushes the TLB of every core running the
    /// process, which halved the requests per second of an HTTP function.
    pub pool_instances: Option<u32>,
}

/// Which shape a component has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    /// Exports `wasi:cli/run`.
    Command,
    /// Exports `wasi:http/incoming-handler`.
    Http,
}

/// A compiled, pre-instantiated component. Cheap to clone.
#[derive(Clone)]
pub struct Loaded {
    digest: String,
    command: Option<CommandPre<Host>>,
    proxy: Option<ProxyPre<Host>>,
}

impl Loaded {
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `Http` when the component exports an HTTP handler (even if it also
    /// exports `wasi:cli/run`), else `Command`.
    pub fn kind(&self) -> ComponentKind {
        if self.proxy.is_some() {
            ComponentKind::Http
        } else {
            ComponentKind::Command
        }
    }

    pub fn is_command(&self) -> bool {
        self.command.is_some()
    }

    pub fn is_http(&self) -> bool {
        self.proxy.is_some()
    }
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("digest", &self.digest)
            .field("command", &self.command.is_some())
            .field("http", &self.proxy.is_some())
            .finish()
    }
}

/// How to run a command component.
#[derive(Clone, Debug, Default)]
pub struct CommandConfig {
    /// The guest's argv, program name first (`args[0]`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Host directory, path in the guest, read-only.
    pub preopens: Vec<(PathBuf, String, bool)>,
    /// The CRI-format log file stdout and stderr go to (appended).
    pub log: PathBuf,
    pub log_rotation: crate::logs::Rotation,
    /// Bytes of linear memory and tables the guest may use.
    pub memory_limit: Option<u64>,
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    pub network: Network,
    /// What the container uses, for the node's metrics.
    pub usage: Arc<Usage>,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitOutcome {
    /// The exit code: the guest's own, [`EXIT_TRAP`] when it trapped,
    /// [`EXIT_OOM`] when it trapped by growing past its memory limit.
    pub code: i32,
    /// It grew past its memory limit (OOMKilled in Kubernetes terms).
    pub oom: bool,
    /// Why it trapped, when it did.
    pub trap: Option<String>,
}

/// How to serve an HTTP function.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub env: Vec<(String, String)>,
    pub preopens: Vec<(PathBuf, String, bool)>,
    pub log: PathBuf,
    pub log_rotation: crate::logs::Rotation,
    /// Per request instance.
    pub memory_limit: Option<u64>,
    /// Shared by all requests of this container.
    pub cpu_millis: Option<u64>,
    pub network: Network,
    /// A request still running after this is cancelled.
    pub request_timeout: Option<Duration>,
    /// Requests beyond this wait for a running one to finish.
    pub max_concurrent_requests: usize,
    /// Counters the caller can read while the server runs.
    pub stats: Arc<HttpStats>,
    /// What the container uses, for the node's metrics.
    pub usage: Arc<Usage>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            env: Vec::new(),
            preopens: Vec::new(),
            log: PathBuf::new(),
            log_rotation: Default::default(),
            memory_limit: None,
            cpu_millis: None,
            network: Network::Pod,
            request_timeout: None,
            max_concurrent_requests: 1000,
            stats: Arc::new(HttpStats::default()),
            usage: Arc::default(),
        }
    }
}

/// The node's Wasm runtime. Cheap to clone; clones share the engine and
/// the loaded components.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: WasmEngine,
    /// Slots of the instance pool, one held per live component instance
    /// (`None`: instances are allocated on demand, without a bound).
    slots: Option<(u32, Arc<Semaphore>)>,
    linker: Linker<Host>,
    loaded: Mutex<HashMap<String, Loaded>>,
}

impl WasmRuntime {
    /// A runtime that caches compiled code in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<WasmRuntime, WasmError> {
        WasmRuntime::with_options(cache_dir, RuntimeOptions::default())
    }

    pub fn with_options(
        cache_dir: impl Into<PathBuf>,
        options: RuntimeOptions,
    ) -> Result<WasmRuntime, WasmError> {
        let engine = WasmEngine::new(cache_dir.into(), &options)?;
        let linker = store::linker(engine.engine())?;
        let slots = options
            .pool_instances
            .map(|n| (n, Arc::new(Semaphore::new(n as usize))));
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                slots,
                linker,
                loaded: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn engine(&self) -> &Engine {
        self.inner.engine.engine()
    }

    /// A pool slot for one instance, once one is free (`None` without a
    /// pool). Held for the instance's life.
    async fn instance_slot(&self) -> Option<OwnedSemaphorePermit> {
        let (_, slots) = self.inner.slots.as_ref()?;
        slots.clone().acquire_owned().await.ok()
    }

    /// A pool slot now, or [`WasmError::PoolFull`].
    fn try_instance_slot(&self) -> Result<Option<OwnedSemaphorePermit>, WasmError> {
        match &self.inner.slots {
            None => Ok(None),
            Some((size, slots)) => slots
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| WasmError::PoolFull(*size)),
        }
    }

    /// Compiles the component at `wasm_path` (or loads the code cached for
    /// `image_digest`) and pre-instantiates it. Blocking and CPU-bound on
    /// first use of an image (~100 ms): call it from `spawn_blocking`.
    /// Later calls for the same digest return the loaded component.
    pub fn load(&self, image_digest: &str, wasm_path: &Path) -> Result<Loaded, WasmError> {
        let cached = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(image_digest)
            .cloned();
        if let Some(loaded) = cached {
            return Ok(loaded);
        }
        let component = self.inner.engine.component(image_digest, wasm_path)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let loaded = Loaded {
            digest: image_digest.to_string(),
            command: CommandPre::new(pre.clone()).ok(),
            proxy: ProxyPre::new(pre).ok(),
        };
        if loaded.command.is_none() && loaded.proxy.is_none() {
            return Err(WasmError::NoEntryPoint);
        }
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(image_digest.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// Forgets the loaded component of an image no pod uses any more (its
    /// compiled code stays cached on disk).
    pub fn unload(&self, image_digest: &str) {
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(image_digest);
    }

    /// Removes the compiled code cached on disk for an image.
    pub fn remove_cached(&self, image_digest: &str) {
        self.unload(image_digest);
        self.inner.engine.remove_cached(image_digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_instance_pool_refuses_commands_and_makes_requests_wait() {
        let dir = tempfile::tempdir().unwrap();
        let options = RuntimeOptions {
            pool_instances: Some(1),
        };
        let runtime = WasmRuntime::with_options(dir.path().join("cache"), options).unwrap();
        let held = runtime.try_instance_slot().unwrap();
        assert!(held.is_some());
        let err = runtime.try_instance_slot().unwrap_err();
        assert!(matches!(err, WasmError::PoolFull(1)), "{err}");
        assert!(err.to_string().contains("--wasm-instance-pool"), "{err}");
        let waiting = tokio::spawn({
            let runtime = runtime.clone();
            async move { runtime.instance_slot().await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert!(waiting.await.unwrap());

        let unpooled = WasmRuntime::new(dir.path().join("cache")).unwrap();
        assert!(unpooled.try_instance_slot().unwrap().is_none());
    }

    #[test]
    fn core_modules_and_other_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = WasmRuntime::new(dir.path().join("cache")).unwrap();
        let module = dir.path().join("module.wasm");
        std::fs::write(&module, b"\0asm\x01\x00\x00\x00").unwrap();
        let err = runtime.load("sha256:m", &module).unwrap_err();
        assert!(matches!(err, WasmError::CoreModule { .. }), "{err}");
        let text = dir.path().join("text.wasm");
        std::fs::write(&text, b"hello").unwrap();
        let err = runtime.load("sha256:t", &text).unwrap_err();
        assert!(matches!(err, WasmError::NotWasm { .. }), "{err}");
    }

    #[test]
    fn compiled_code_is_cached_and_a_component_without_entry_point_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        // The smallest component: the preamble alone.
        let empty = dir.path().join("empty.wasm");
        std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
        let runtime = WasmRuntime::new(&cache).unwrap();
        let err = runtime.load("sha256:empty", &empty).unwrap_err();
        assert!(matches!(err, WasmError::NoEntryPoint), "{err}");
        let cached: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert!(cached[0].starts_with("sha256_empty-") && cached[0].ends_with(".cwasm"));
        // A second runtime loads the cached code even without the source.
        std::fs::remove_file(&empty).unwrap();
        let again = WasmRuntime::new(&cache).unwrap();
        let err = again.load("sha256:empty", &empty).unwrap_err();
        assert!(matches!(err, WasmError::NoEntryPoint), "{err}");
    }
}
