//! The `peapod` binary: parses the command line and wires the crates together.

mod cli;

use clap::Parser;

// The API server allocates and frees many small JSON values per request;
// mimalloc is much faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let default_level = if cli.is_exec_helper() {
        // The exec helper's stderr is the user's: only real failures.
        "off"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(cli.run())
}
