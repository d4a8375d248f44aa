//! What each guest instance lives in: the host state of a wasmtime
//! `Store` (WASI context, HTTP context, resource table, memory limiter),
//! the linker that hands guests WASI, and how a store is set up.
//!
//! Every component gets all of `wasi:cli/command` (filesystem, sockets,
//! clocks, random, stdio, environment, exit) plus `wasi:http`: Rust's std
//! makes even HTTP handlers import `wasi:cli`, as `wasmtime serve -Scli`
//! allows.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::{self, CpuMeter, CpuQuota, MemoryLimiter, Usage};
use super::output::LogFile;
use super::{Network, WasmError};
use crate::logs::Stream;

/// Most resources (streams, sockets, files, requests) a guest may hold at
/// once; host memory behind them is not counted in its memory limit.
const MAX_RESOURCES: usize = 1 << 16;

/// The data of each store.
pub(crate) struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) meter: CpuMeter,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            // Outgoing requests with wasmtime-wasi-http's hyper client.
            hooks: Default::default(),
        }
    }
}

/// The linker every component is instantiated with.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<Host>, WasmError> {
    let mut linker = Linker::<Host>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| WasmError::Engine(format!("adding WASI to the linker: {e:#}")))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| WasmError::Engine(format!("adding wasi:http to the linker: {e:#}")))?;
    Ok(linker)
}

/// What a new store is given.
pub(crate) struct StoreSpec<'a> {
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) preopens: &'a [(PathBuf, String, bool)],
    pub(crate) log: &'a Arc<LogFile>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) cpu: Option<Arc<CpuQuota>>,
    pub(crate) network: Network,
    pub(crate) usage: &'a Arc<Usage>,
}

/// A store ready to instantiate a component in: WASI set up, stdout and
/// stderr going to the log, limits and the epoch deadline in place.
pub(crate) fn new_store(engine: &Engine, spec: StoreSpec<'_>) -> Result<Store<Host>, WasmError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(spec.args)
        .envs(spec.env)
        .stdout(spec.log.stream(Stream::Stdout))
        .stderr(spec.log.stream(Stream::Stderr));
    for (host, guest, readonly) in spec.preopens {
        let perms = if *readonly {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(host, guest, perms)
            .map_err(|e| WasmError::Preopen {
                host: host.clone(),
                guest: guest.clone(),
                message: format!("{e:#}"),
            })?;
    }
    if spec.network == Network::Pod {
        builder
            .inherit_network()
            .allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true);
    }
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let host = Host {
        table,
        wasi: builder.build(),
        http: WasiHttpCtx::new(),
        limiter: MemoryLimiter::new(spec.memory_limit, spec.usage.clone()),
        meter: CpuMeter::new(spec.usage.clone()),
    };
    let mut store = Store::new(engine, host);
    store.limiter(|host| &mut host.limiter);
    limits::install_epoch_handler(&mut store, spec.cpu);
    Ok(store)
}
