//! The node's wasmtime engine: its configuration, the epoch ticker thread,
//! and the on-disk cache of compiled components.
//!
//! Compiled code is cached as `<digest>-<engine hash>.cwasm`: the image
//! digest names the input, `Engine::precompile_compatibility_hash` the
//! engine settings and wasmtime version, so a changed engine never loads
//! stale code (and wasmtime checks compatibility again on load).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::TICK;
use super::{RuntimeOptions, WasmError, io};

pub(crate) struct WasmEngine {
    engine: Engine,
    cache_dir: PathBuf,
    /// `precompile_compatibility_hash`, hashed.
    compat: u64,
}

/// Bytes of each pool slot's memory, tables and stack kept resident
/// between instances (above it, pages are given back with `madvise`).
const KEEP_RESIDENT: usize = 4 << 20;

/// Makes temporary file names unique within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl WasmEngine {
    pub(crate) fn new(
        cache_dir: PathBuf,
        options: &RuntimeOptions,
    ) -> Result<WasmEngine, WasmError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Every store must set a deadline (see `limits`): guests yield at
        // each tick and CPU limits are applied there.
        config.epoch_interruption(true);
        if let Some(instances) = options.pool_instances {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(instances)));
        }
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        std::fs::create_dir_all(&cache_dir)
            .map_err(io(format!("creating {}", cache_dir.display())))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = hasher.finish();
        spawn_ticker(&engine).map_err(io("starting the epoch ticker"))?;
        Ok(WasmEngine {
            engine,
            cache_dir,
            compat,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    fn cache_path(&self, digest: &str) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{:016x}.cwasm", safe_name(digest), self.compat))
    }

    /// The component for an image: its cached compiled code, or compiled
    /// from `wasm` (and then cached).
    pub(crate) fn component(&self, digest: &str, wasm: &Path) -> Result<Component, WasmError> {
        let cached = self.cache_path(digest);
        if cached.exists() {
            // SAFETY: files in the cache directory are written only by
            // `Component::serialize` below, through a rename, so a mapped
            // file is never modified in place.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::warn!(
                        file = %cached.display(),
                        error = %error,
                        "discarding cached compiled code"
                    );
                    let _ = std::fs::remove_file(&cached);
                }
            }
        }
        let bytes = std::fs::read(wasm).map_err(io(format!("reading {}", wasm.display())))?;
        match binary_kind(&bytes) {
            BinaryKind::Component => {}
            BinaryKind::Module => {
                return Err(WasmError::CoreModule {
                    path: wasm.to_path_buf(),
                });
            }
            BinaryKind::Other => {
                return Err(WasmError::NotWasm {
                    path: wasm.to_path_buf(),
                });
            }
        }
        let component =
            Component::from_binary(&self.engine, &bytes).map_err(|e| WasmError::Compile {
                path: wasm.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        if let Err(e) = self.store(&cached, &component) {
            tracing::warn!(file = %cached.display(), error = %e, "caching compiled code");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        let tmp = path.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })
    }

    pub(crate) fn remove_cached(&self, digest: &str) {
        let _ = std::fs::remove_file(self.cache_path(digest));
    }
}

fn pooling(instances: u32) -> PoolingAllocationConfig {
    // A Rust component has one memory and a handful of core instances and
    // tables (its module plus wit-component's shims).
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(8))
        .total_stacks(instances)
        // A slot given back is reset by rewriting the pages the instance
        // touched (found with PAGEMAP_SCAN where the kernel has it), not by
        // `madvise`, which flushes the TLB of every core running the
        // process, as unmapping does.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// One thread per engine advances the epoch every tick; it stops when the
/// engine is gone.
fn spawn_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum BinaryKind {
    Component,
    Module,
    Other,
}

/// Tells components from core modules by the preamble: `\0asm`, then a
/// 16-bit version and a 16-bit layer, which is 1 for components.
fn binary_kind(bytes: &[u8]) -> BinaryKind {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        BinaryKind::Other
    } else if bytes[6..8] == [1, 0] {
        BinaryKind::Component
    } else {
        BinaryKind::Module
    }
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_told_from_modules() {
        assert_eq!(
            binary_kind(b"\0asm\x0d\x00\x01\x00rest"),
            BinaryKind::Component
        );
        assert_eq!(binary_kind(b"\0asm\x01\x00\x00\x00"), BinaryKind::Module);
        assert_eq!(binary_kind(b"#!/bin/sh\n"), BinaryKind::Other);
        assert_eq!(binary_kind(b"\0as"), BinaryKind::Other);
    }

    #[test]
    fn digests_make_safe_file_names() {
        assert_eq!(safe_name("sha256:ab/cd"), "sha256_ab_cd");
    }
}
