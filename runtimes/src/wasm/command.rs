//! Command components (`wasi:cli/run`): run once, to the end.

use wasmtime_wasi::I32Exit;

use super::limits::CpuQuota;
use super::output::LogFile;
use super::store::{self, StoreSpec};
use super::{CommandConfig, ExitOutcome, Loaded, WasmError, WasmRuntime, io};
use crate::logs::Stream;

/// The exit code of a guest that trapped: 128 + SIGABRT, as `wasmtime run`
/// exits.
pub const EXIT_TRAP: i32 = 134;
/// The exit code of a guest that trapped by growing past its memory limit:
/// 128 + SIGKILL, as an OOM-killed container.
pub const EXIT_OOM: i32 = 137;

impl WasmRuntime {
    /// Runs a command component until it exits. Output goes to
    /// `config.log` as it is written. Dropping the future stops the guest.
    ///
    /// `Err` only for what keeps it from starting (not a command, the log
    /// or a volume cannot be opened); a guest that fails, traps or runs
    /// out of memory is an [`ExitOutcome`].
    pub async fn run_command(
        &self,
        loaded: &Loaded,
        config: CommandConfig,
    ) -> Result<ExitOutcome, WasmError> {
        let pre = loaded.command.as_ref().ok_or(WasmError::NotACommand)?;
        // Held until the instance is gone with its store.
        let _slot = self.try_instance_slot()?;
        let log = LogFile::open(&config.log, config.log_rotation)
            .map_err(io(format!("opening the log {}", config.log.display())))?;
        let mut store = store::new_store(
            self.engine(),
            StoreSpec {
                args: &config.args,
                env: &config.env,
                preopens: &config.preopens,
                log: &log,
                memory_limit: config.memory_limit,
                cpu: config.cpu_millis.map(CpuQuota::new),
                network: config.network,
                usage: &config.usage,
            },
        )?;
        let result = match pre.instantiate_async(&mut store).await {
            Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
            Err(e) => Err(e),
        };
        let oom = store.data().limiter.oom();
        // Ends the guest's streams: unterminated lines are written now,
        // before any message of ours.
        drop(store);
        let outcome = outcome(result, oom);
        if let Some(trap) = &outcome.trap {
            let what = if outcome.oom {
                "wasm: out of memory"
            } else {
                "wasm: trap"
            };
            log.message(Stream::Stderr, &format!("{what}: {trap}"));
        }
        Ok(outcome)
    }
}

/// How a run ended, from what `wasi:cli/run` returned.
fn outcome(result: wasmtime::Result<Result<(), ()>>, oom: bool) -> ExitOutcome {
    match result {
        Ok(Ok(())) => exited(0),
        Ok(Err(())) => exited(1),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return exited(exit.0);
            }
            ExitOutcome {
                code: if oom { EXIT_OOM } else { EXIT_TRAP },
                oom,
                trap: Some(format!("{e:#}")),
            }
        }
    }
}

fn exited(code: i32) -> ExitOutcome {
    ExitOutcome {
        code,
        oom: false,
        trap: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_traps_and_oom_become_outcomes() {
        assert_eq!(outcome(Ok(Ok(())), false), exited(0));
        assert_eq!(outcome(Ok(Err(())), false), exited(1));
        let exit = wasmtime::format_err!(I32Exit(3)).context("while running");
        assert_eq!(outcome(Err(exit), false), exited(3));
        let trap = outcome(Err(wasmtime::format_err!("unreachable")), false);
        assert_eq!(trap.code, EXIT_TRAP);
        assert!(!trap.oom);
        let oom = outcome(Err(wasmtime::format_err!("memory limit")), true);
        assert_eq!(oom.code, EXIT_OOM);
        assert!(oom.oom);
        assert!(oom.trap.unwrap().contains("memory limit"));
    }
}
