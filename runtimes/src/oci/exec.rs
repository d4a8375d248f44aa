//! The exec helper: runs a process inside a running container (its
//! namespaces, cgroup, user and capabilities) through libcontainer's tenant
//! builder, in a single-threaded process whose stdio the new process
//! inherits. The helper exits with the process's exit code.

use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::pidfd::PidFd;

#[derive(Clone, Debug)]
pub struct ExecArgs {
    /// libcontainer's state root.
    pub root: PathBuf,
    pub id: String,
    pub args: Vec<String>,
}

/// Exit code when the process could not be started (as `kubectl exec`
/// shows for a missing command).
const CANNOT_EXEC: i32 = 126;

pub fn run(args: ExecArgs) -> i32 {
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            let tenant = b
                .as_tenant()
                .with_container_args(args.args.clone())
                .with_detach(false);
            super::signals::with_default_sigpipe(|| tenant.build())
        });
    let pid = match built {
        Ok(pid) => pid.as_raw(),
        Err(e) => {
            eprintln!("cannot exec in container {}: {e}", args.id);
            return CANNOT_EXEC;
        }
    };
    match PidFd::open(pid).and_then(|fd| fd.wait()) {
        Ok(status) => status.code(),
        Err(e) => {
            eprintln!("waiting for the exec'd process: {e}");
            CANNOT_EXEC
        }
    }
}
