//! OCI containers through youki's libcontainer. libcontainer clones without
//! exec and runs Rust code in the child, so it never runs inside the
//! agent's multi-threaded process: every container gets a small
//! single-threaded shim process (`peapod` re-executed, see [`shim`]) that
//! creates and starts it, relays its output to the log file, waits for it,
//! and records how it ended. Shims outlive the agent, which re-adopts
//! running containers through the shim's pid and state files.

pub mod attach;
pub mod exec;
mod pidfd;
mod profile;
pub mod seccomp;
pub mod shim;
mod signals;
mod spec;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

pub use self::pidfd::PidFd;
pub use self::seccomp::Seccomp;

/// The hidden subcommand that runs a shim (`peapod <SHIM_COMMAND> ...`).
pub const SHIM_COMMAND: &str = "oci-shim";
/// The hidden subcommand that runs a process in a container.
pub const EXEC_COMMAND: &str = "oci-exec";

/// The allocator's transparent huge pages are off in the short-lived
/// helpers: each would fault in and zero a few 2 MiB pages for a few
/// hundred KiB of heap, which costs milliseconds per container start (more
/// in a VM whose free memory goes back to the host).
const NO_HUGE_PAGES: (&str, &str) = ("MIMALLOC_ALLOW_THP", "0");

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("writing the container spec: {0}")]
    Spec(String),
    #[error("{0}")]
    Start(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OciError {
    let context = context.into();
    move |source| OciError::Io { context, source }
}

/// A bind mount into the container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// The pod-level namespaces a container joins.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

/// Security settings (from the container's `securityContext`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Security {
    pub privileged: bool,
    /// `allowPrivilegeEscalation`; no_new_privs is set unless this is true.
    pub allow_privilege_escalation: bool,
    pub readonly_rootfs: bool,
    /// Capability names as Kubernetes writes them (`NET_ADMIN`, `ALL`).
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    /// The seccomp filter (none for privileged containers, whatever this says).
    pub seccomp: Seccomp,
}

/// cgroup limits.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    /// `cpu.shares`, from the CPU request.
    pub cpu_shares: Option<u64>,
    /// CPU quota in millicores, from the CPU limit.
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
}

/// The container's standard input and terminal (`stdin`, `stdinOnce`,
/// `tty`), which `kubectl attach` reaches through the shim.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Streams {
    pub stdin: bool,
    /// Stdin closes when the first attached client closes it.
    pub stdin_once: bool,
    pub tty: bool,
}

/// Everything needed to create one container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Unique on the node; names the libcontainer state and the cgroup leaf.
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The mounted root filesystem.
    pub rootfs: PathBuf,
    pub mounts: Vec<BindMount>,
    pub namespaces: PodNamespaces,
    /// The pod's cgroup, relative to each hierarchy (`peapod/pod<uid>`).
    pub cgroup_parent: String,
    pub resources: Resources,
    pub security: Security,
    /// The CRI-format log file output goes to.
    pub log: PathBuf,
    /// When the log rotates, and how many files of it are kept.
    #[serde(default)]
    pub log_rotation: crate::logs::Rotation,
    #[serde(default)]
    pub streams: Streams,
}

impl ContainerConfig {
    /// The container's cgroup path, relative to each hierarchy.
    pub fn cgroup_path(&self) -> String {
        format!("/{}/{}", self.cgroup_parent, self.id)
    }
}

/// How a container ended, as its shim recorded it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it.
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub finished_at: String,
    /// Set when the container could not be started at all.
    pub error: Option<String>,
    /// What the runtime knows of how it ended (a Wasm trap).
    #[serde(default)]
    pub message: Option<String>,
}

/// A container that was started (or found running).
#[derive(Clone, Debug)]
pub struct Running {
    pub id: String,
    /// The container's init process, in the host pid namespace.
    pub pid: i32,
    /// The shim watching it.
    pub shim_pid: i32,
    pub started_at: String,
}

/// The OCI runtime of a node: where container state lives and which binary
/// serves as shim.
#[derive(Clone, Debug)]
pub struct Oci {
    /// Per-container state (`<root>/<id>/`), also libcontainer's root.
    root: PathBuf,
    /// The `peapod` binary, re-executed as shim and exec helper.
    exe: PathBuf,
}

/// The files of a container's state directory.
struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    fn shim_pid(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }
    fn started(&self) -> PathBuf {
        self.dir.join("started.json")
    }
    fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
}

#[derive(Serialize, Deserialize)]
struct Started {
    pid: i32,
    started_at: String,
}

impl Oci {
    pub fn new(root: &Path, exe: &Path) -> Oci {
        Oci {
            root: root.to_path_buf(),
            exe: exe.to_path_buf(),
        }
    }

    fn files(&self, id: &str) -> StateFiles {
        StateFiles {
            dir: self.root.join("state").join(id),
        }
    }

    /// libcontainer's own state root (short: it holds a unix socket path).
    fn libcontainer_root(&self) -> PathBuf {
        self.root.join("lc")
    }

    /// Creates and starts a container through a new shim; returns once it
    /// runs (or with the reason it could not start).
    pub async fn start(&self, config: &ContainerConfig) -> Result<Running, OciError> {
        let files = self.files(&config.id);
        // A leftover of an earlier attempt with the same id goes first.
        self.remove(&config.id);
        let bundle = files.bundle();
        std::fs::create_dir_all(&bundle).map_err(io(format!("creating {}", bundle.display())))?;
        spec::build(config)
            .map_err(|e| OciError::Spec(e.to_string()))?
            .save(bundle.join("config.json"))
            .map_err(|e| OciError::Spec(e.to_string()))?;
        if let Some(dir) = config.log.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let shim_log =
            std::fs::File::create(files.shim_log()).map_err(io("creating the shim log"))?;
        std::fs::create_dir_all(self.sockets()).map_err(io("creating the sockets' directory"))?;
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(SHIM_COMMAND)
            .arg("--id")
            .arg(&config.id)
            .arg("--state")
            .arg(&files.dir)
            .arg("--root")
            .arg(self.libcontainer_root())
            .arg("--log")
            .arg(&config.log)
            .arg("--log-max-size")
            .arg(config.log_rotation.max_size.to_string())
            .arg("--log-max-files")
            .arg(config.log_rotation.max_files.to_string())
            .arg("--cgroup")
            .arg(config.cgroup_path())
            .arg("--sockets")
            .arg(self.sockets())
            .args(config.streams.tty.then_some("--tty"))
            .args(config.streams.stdin.then_some("--stdin"))
            .args(config.streams.stdin_once.then_some("--stdin-once"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env(NO_HUGE_PAGES.0, NO_HUGE_PAGES.1);
        // No pre_exec hook (the shim makes its own session): without one the
        // shim is spawned with posix_spawn, not by forking the agent, whose
        // address space (the Wasm instance pool) is large to copy.
        let mut child = command.spawn().map_err(io("starting the shim"))?;
        let shim_pid = child.id().unwrap_or_default() as i32;
        let mut reply = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut reply).await;
        }
        // The shim is reaped by tokio once it exits; it is watched through
        // its pid file like any re-adopted shim.
        drop(child);
        match reply.trim().split_once(' ') {
            Some(("started", pid)) => {
                let pid: i32 = pid
                    .parse()
                    .map_err(|_| OciError::Start(format!("bad shim reply {reply:?}")))?;
                let started_at = self
                    .read_started(&config.id)
                    .map(|s| s.started_at)
                    .unwrap_or_else(crate::logs::timestamp);
                Ok(Running {
                    id: config.id.clone(),
                    pid,
                    shim_pid,
                    started_at,
                })
            }
            _ => {
                let reason = self
                    .exit(&config.id)
                    .and_then(|e| e.error)
                    .unwrap_or_else(|| {
                        let log = std::fs::read_to_string(files.shim_log()).unwrap_or_default();
                        format!("the shim failed: {}", last_lines(&log, 5))
                    });
                Err(OciError::Start(reason))
            }
        }
    }

    fn read_started(&self, id: &str) -> Option<Started> {
        serde_json::from_slice(&std::fs::read(self.files(id).started()).ok()?).ok()
    }

    /// A container whose shim still runs (after an agent restart).
    pub fn running(&self, id: &str) -> Option<Running> {
        let files = self.files(id);
        let shim_pid: i32 = std::fs::read_to_string(files.shim_pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The pid may have been reused: the process must be this shim.
        let cmdline = std::fs::read(format!("/proc/{shim_pid}/cmdline")).ok()?;
        let mine = cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes());
        if !mine {
            return None;
        }
        let started = self.read_started(id)?;
        Some(Running {
            id: id.to_string(),
            pid: started.pid,
            shim_pid,
            started_at: started.started_at,
        })
    }

    /// How the container ended, once its shim recorded it.
    pub fn exit(&self, id: &str) -> Option<Exit> {
        serde_json::from_slice(&std::fs::read(self.files(id).exit()).ok()?).ok()
    }

    /// Ids of every container with state on this node.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("state"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits until the container's shim is gone, then returns how the
    /// container ended.
    pub async fn wait(&self, running: &Running) -> Exit {
        if let Ok(fd) = PidFd::open(running.shim_pid) {
            let _ = fd.exited().await;
        }
        self.exit(&running.id).unwrap_or_else(|| Exit {
            code: 137,
            signal: Some(9),
            oom_killed: false,
            started_at: Some(running.started_at.clone()),
            finished_at: crate::logs::timestamp(),
            error: Some("the container's shim ended without recording an exit".into()),
            message: None,
        })
    }

    /// Sends `signal` to the container's init process (which takes the
    /// rest of its pid namespace with it when it dies).
    pub fn signal(&self, running: &Running, signal: nix::sys::signal::Signal) {
        if self.running(&running.id).is_some() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(running.pid), signal);
        }
    }

    /// Removes what is left of a container that is no longer running:
    /// its state directory and libcontainer's.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.files(id).dir);
        for kind in ["attach", "console"] {
            let _ = std::fs::remove_file(attach::socket_path(&self.sockets(), id, kind));
        }
        let lc = self.libcontainer_root().join(id);
        if lc.exists() {
            let _ = std::fs::remove_dir_all(lc);
        }
    }

    /// Where shims make their sockets (short paths, see [`attach::socket_path`]).
    fn sockets(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The socket the container's shim serves attach sessions on.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        attach::socket_path(&self.sockets(), id, "attach")
    }

    /// The command that runs `args` inside a running container through the
    /// exec helper; its stdio is the process's, its exit code the process's.
    pub fn exec_command(&self, id: &str, args: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(EXEC_COMMAND)
            .env(NO_HUGE_PAGES.0, NO_HUGE_PAGES.1)
            .arg("--root")
            .arg(self.libcontainer_root())
            .arg("--id")
            .arg(id)
            .arg("--")
            .args(args);
        command
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}
