//! Seccomp for OCI containers. `RuntimeDefault` is an allow-list with the
//! reach of containerd's and Docker's default profiles: what ordinary
//! programs call is allowed, calls that act on the kernel as a whole are
//! allowed only with the capability that makes them safe to try, and all
//! else fails with `EPERM` (so a system call added to the kernel tomorrow
//! is refused until it is judged). `Localhost` profiles are JSON files in
//! the OCI (and Docker) format, given as they are.

use std::collections::BTreeSet;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::{Deserialize, Serialize};

pub use oci_spec::runtime::LinuxSeccomp as Profile;

/// Which filter a container runs under.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub enum Seccomp {
    /// No filter (`seccompProfile: Unconfined`, or privileged).
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile loaded from the node's seccomp directory.
    Profile(Box<LinuxSeccomp>),
}

/// Allowed to every container: files, memory, processes and threads,
/// signals, time, sockets, IPC and scheduling within the container's own
/// namespaces. Names a kernel or architecture lacks are skipped.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Files and directories.
    "access", "cachestat", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "file_getattr", "file_setattr", "flistxattr", "flock", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "getxattrat", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "ioctl", "lchown", "lchown32",
    "lgetxattr", "link", "linkat", "listxattr", "listxattrat", "llistxattr", "_llseek",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod",
    "mknodat", "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64",
    "setxattr", "setxattrat", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write",
    "writev",
    // Asynchronous I/O (not io_uring: its own attack surface, refused as
    // Docker and containerd do).
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit",
    // Pipes.
    "pipe", "pipe2",
    // Waiting on many things at once.
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "_newselect", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64",
    // Memory.
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal",
    "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages",
    // Processes and threads (clone is allowed below, by its flags).
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "get_robust_list",
    "get_thread_area", "getcpu", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "getrusage", "getsid", "gettid", "getuid", "getuid32", "ioprio_get", "ioprio_set",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open",
    "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid",
    "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid", "setuid", "setuid32",
    "ugetrlimit", "uretprobe", "vfork", "wait4", "waitid", "waitpid",
    // ptrace is confined to the caller's own processes since Linux 4.8,
    // so, as Docker does, it is allowed (debuggers, strace).
    "ptrace",
    // Futexes.
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    // Signals.
    "alarm", "kill", "pause", "restart_syscall", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn",
    "tgkill", "tkill",
    // Time (reading it; setting it needs CAP_SYS_TIME below).
    "adjtimex", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "getitimer", "gettimeofday", "nanosleep",
    "setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "times",
    // Sockets.
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
    "sendto", "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
    // System V and POSIX IPC (the pod's own IPC namespace).
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
    // About the system.
    "getrandom", "sysinfo", "uname",
];

/// Architecture-specific calls every container may make.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ON_THIS_ARCH: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ALLOWED_ON_THIS_ARCH: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ALLOWED_ON_THIS_ARCH: &[&str] = &[];

/// The ABIs a container's binaries may use on this machine: on x86-64 the
/// 32-bit ones too, filtered by the same names. Others are killed.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// Calls allowed only to a container holding the capability: the kernel
/// checks it too, but these reach code (mounting, namespaces, BPF,
/// modules, clocks) worth not exposing to anyone else at all.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_BPF", &["bpf"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "open_tree_attr",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "finit_module", "init_module"],
    ),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
        ],
    ),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "CAP_SYS_TIME",
        &[
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYSLOG", &["syslog"]),
];

/// The flags by which `clone` makes new namespaces.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `personality` values programs set (Linux, 32-bit, `uname26`, both) or
/// use to query; others (e.g. `ADDR_NO_RANDOMIZE`) are refused.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn rule(
    names: impl IntoIterator<Item = String>,
    action: LinuxSeccompAction,
) -> LinuxSyscallBuilder {
    LinuxSyscallBuilder::default()
        .names(names.into_iter().collect::<Vec<_>>())
        .action(action)
}

/// `RuntimeDefault` for a container whose bounding set is `capabilities`
/// (names as in the OCI spec: `CAP_SYS_ADMIN`).
pub fn runtime_default(capabilities: &[String]) -> Result<LinuxSeccomp, OciSpecError> {
    let holds = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut allowed: BTreeSet<&str> = ALLOWED
        .iter()
        .chain(ALLOWED_ON_THIS_ARCH)
        .copied()
        .collect();
    for (cap, names) in BY_CAPABILITY {
        if holds(cap) {
            allowed.extend(names.iter().copied());
        }
    }
    let mut syscalls = vec![
        rule(
            allowed.iter().map(|s| s.to_string()),
            LinuxSeccompAction::ScmpActAllow,
        )
        .build()?,
    ];
    for &persona in PERSONALITIES {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(persona)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()?;
        syscalls.push(
            rule(
                ["personality".to_string()],
                LinuxSeccompAction::ScmpActAllow,
            )
            .args(vec![arg])
            .build()?,
        );
    }
    if !holds("CAP_SYS_ADMIN") {
        // clone without namespace flags (fork, threads). The flags are
        // argument 0 on x86-64 and arm64 (s390 has them second).
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(CLONE_NAMESPACES)
            .value_two(0u64)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            rule(["clone".to_string()], LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg])
                .build()?,
        );
        // clone3 passes its flags in memory, beyond seccomp's sight: it
        // answers "not implemented", so that libc falls back to clone.
        syscalls.push(
            rule(["clone3".to_string()], LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc::ENOSYS as u32)
                .build()?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
}

/// Reads a `Localhost` profile: the OCI format (`defaultAction`,
/// `architectures`, `syscalls`), which Docker's profiles also are.
pub fn parse_profile(json: &[u8]) -> Result<LinuxSeccomp, serde_json::Error> {
    serde_json::from_slice(json)
}

/// The profile as libcontainer 0.7 reads it. The OCI spec (and runc) take
/// a masked comparison's `value` as the mask and `valueTwo` as what the
/// masked argument must equal; libcontainer takes them the other way
/// round, so they are swapped here, once, for every profile.
pub fn for_libcontainer(mut profile: LinuxSeccomp) -> Result<LinuxSeccomp, OciSpecError> {
    let swap = |mut s: LinuxSyscall| -> Result<LinuxSyscall, OciSpecError> {
        if let Some(args) = s.args().clone() {
            let args = args
                .into_iter()
                .map(|a| match a.op() {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => LinuxSeccompArgBuilder::default()
                        .index(a.index())
                        .value(a.value_two().unwrap_or(0))
                        .value_two(a.value())
                        .op(a.op())
                        .build(),
                    _ => Ok(a),
                })
                .collect::<Result<Vec<_>, _>>()?;
            s.set_args(Some(args));
        }
        Ok(s)
    };
    if let Some(syscalls) = profile.syscalls().clone() {
        let swapped = syscalls.into_iter().map(swap).collect::<Result<_, _>>()?;
        profile.set_syscalls(Some(swapped));
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp, action: LinuxSeccompAction) -> BTreeSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == action && s.args().as_ref().is_none_or(|a| a.is_empty()))
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn what_acts_on_the_whole_kernel_is_not_allowed_without_its_capability() {
        let docker_caps = [
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_SYS_CHROOT",
            "CAP_NET_BIND_SERVICE",
        ]
        .map(String::from);
        let p = runtime_default(&docker_caps).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        let allowed = names(&p, LinuxSeccompAction::ScmpActAllow);
        for ordinary in [
            "read",
            "newfstatat",
            "pipe2",
            "execve",
            "futex",
            "socket",
            "chroot",
            "rseq",
            "close_range",
        ] {
            assert!(allowed.contains(ordinary), "{ordinary}");
        }
        for refused in [
            "io_uring_setup",
            "io_uring_enter",
            "bpf",
            "kexec_load",
            "open_by_handle_at",
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "userfaultfd",
            "init_module",
            "clone",
            "clone3",
            "personality",
        ] {
            assert!(!allowed.contains(refused), "{refused}");
        }
        // clone3 answers ENOSYS, so that libc falls back to clone.
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn a_capability_brings_its_calls() {
        let admin = runtime_default(&["CAP_SYS_ADMIN".to_string()]).unwrap();
        let allowed = names(&admin, LinuxSeccompAction::ScmpActAllow);
        assert!(
            allowed.contains("mount") && allowed.contains("clone3") && allowed.contains("clone")
        );
        assert!(!allowed.contains("reboot"));
        assert!(
            admin
                .syscalls()
                .iter()
                .flatten()
                .all(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
        );
    }

    #[test]
    fn masked_comparisons_are_turned_round_for_libcontainer_only() {
        let p = for_libcontainer(runtime_default(&[]).unwrap()).unwrap();
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone"])
            .unwrap();
        let arg = &clone.args().as_ref().unwrap()[0];
        assert_eq!((arg.value(), arg.value_two()), (0, Some(CLONE_NAMESPACES)));
        let persona = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["personality"])
            .unwrap();
        assert_eq!(persona.args().as_ref().unwrap()[0].value(), 0);
    }

    #[test]
    fn docker_format_profiles_parse() {
        let json = br#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
        let p = parse_profile(json).unwrap();
        assert_eq!(
            p.syscalls().as_ref().unwrap()[0].names(),
            &["mkdir", "mkdirat"]
        );
        assert!(parse_profile(b"{\"defaultAction\":\"SCMP_ACT_NOPE\"}").is_err());
    }
}
