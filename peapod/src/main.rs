//! The `peapod` binary: parses the command line and wires the crates together.

mod cli;
mod run;

use clap::Parser;

// The API server allocates and frees many small JSON values per request;
// mimalloc is much faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    // The exec helper's stderr is the user's: it logs nothing. The shim's
    // output lands in its own log; libcontainer's warnings from inside a
    // starting container would land in the container's log, so only
    // errors by default there.
    let (variable, default_level) = match () {
        _ if cli.is_exec_helper() => ("PEAPOD_EXEC_LOG", "off"),
        _ if cli.is_shim() => ("PEAPOD_SHIM_LOG", "error"),
        // hickory logs every DNS query at info.
        _ => ("PEAPOD_LOG", "info,hickory_server=warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(variable)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // Helpers that run libcontainer must stay single-threaded: they run
    // before any async runtime (and its threads) exists.
    if let Some(code) = cli.run_helper() {
        std::process::exit(code);
    }
    // The server, node and cluster commands hold many connections and pods.
    peapod_common::conn::raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(cli.run())
}
