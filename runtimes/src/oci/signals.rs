//! Signal dispositions a container must not inherit. Rust programs (the
//! shim and the exec helper are) ignore SIGPIPE, and an ignored signal
//! stays ignored across fork and exec: a container process would then
//! never die of a broken pipe, so `yes | head` would spin for ever.
//! `std::process::Command` resets it for its children; libcontainer's
//! clone does not, so the processes it makes are forked with it reset.

use nix::sys::signal::{SigHandler, Signal, signal};

/// Runs `fork`, which makes a container process, with SIGPIPE at its
/// default, and ignores SIGPIPE again afterwards. The shim and the exec
/// helper are single-threaded, so nothing else runs meanwhile.
pub fn with_default_sigpipe<T>(fork: impl FnOnce() -> T) -> T {
    // SAFETY: setting a disposition to SIG_DFL or SIG_IGN installs no
    // handler code; both calls only change what the kernel does.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.ok();
    let made = fork();
    // SAFETY: as above.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.ok();
    made
}
