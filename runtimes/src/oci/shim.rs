//! The container shim: a single-threaded process (no async runtime, no
//! other threads) that owns one container for its whole life. It creates
//! and starts the container with libcontainer, tells the agent on stdout
//! (`started <pid>` or `error <reason>`), relays the container's stdout and
//! stderr to a CRI-format log file, reaps the container's init process,
//! records how it ended in `exit.json`, and deletes the container.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::pidfd::PidFd;
use super::{Exit, Started};
use crate::logs::{LineWriter, Stream};

/// The shim's command line, parsed by the binary.
#[derive(Clone, Debug)]
pub struct ShimArgs {
    pub id: String,
    /// This container's state directory (bundle, pid and exit files).
    pub state: PathBuf,
    /// libcontainer's state root.
    pub root: PathBuf,
    pub log: PathBuf,
    /// The container's cgroup path (to tell an OOM kill).
    pub cgroup: String,
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

/// Tells the agent the outcome of the start, then detaches stdout so that
/// the agent going away later cannot hurt the shim.
fn reply(message: &str) {
    let mut out = io::stdout();
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

fn record_exit(args: &ShimArgs, exit: &Exit) {
    let data = serde_json::to_vec(exit).expect("an exit serializes");
    if let Err(e) = write_atomically(&args.state.join("exit.json"), &data) {
        tracing::error!("recording the exit of {}: {e}", args.id);
    }
}

/// Whether the memory cgroup saw an OOM kill (cgroup v1 `oom_kill` counter,
/// or the v2 `memory.events` one).
fn oom_killed(cgroup: &str) -> bool {
    let v1 = format!("/sys/fs/cgroup/memory{cgroup}/memory.oom_control");
    let v2 = format!("/sys/fs/cgroup{cgroup}/memory.events");
    [v1, v2].iter().any(|path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    })
}

/// Runs the shim; returns the process exit code.
pub fn run(args: ShimArgs) -> i32 {
    // A session of its own, so that signals meant for the agent's terminal
    // never reach the shim (it outlives the agent).
    let _ = nix::unistd::setsid();
    let _ = std::fs::create_dir_all(&args.state);
    let _ = std::fs::write(args.state.join("shim.pid"), std::process::id().to_string());
    match create_and_start(&args) {
        Ok((container, init, pipes)) => {
            let started_at = crate::logs::timestamp();
            let pid = container.pid().map(|p| p.as_raw()).unwrap_or_default();
            let started = Started {
                pid,
                started_at: started_at.clone(),
            };
            let _ = write_atomically(
                &args.state.join("started.json"),
                &serde_json::to_vec(&started).expect("serializes"),
            );
            reply(&format!("started {pid}"));
            let status = relay_until_exit(&args.log, &init, pipes);
            let code = status.as_ref().map(|s| s.code()).unwrap_or(255);
            let signal = match status {
                Ok(super::pidfd::Status::Signaled(s)) => Some(s),
                _ => None,
            };
            let exit = Exit {
                code,
                signal,
                oom_killed: signal == Some(libc::SIGKILL) && oom_killed(&args.cgroup),
                started_at: Some(started_at),
                finished_at: crate::logs::timestamp(),
                error: None,
                message: None,
            };
            record_exit(&args, &exit);
            delete(container);
            0
        }
        Err(message) => {
            tracing::error!("starting container {}: {message}", args.id);
            record_exit(
                &args,
                &Exit {
                    code: 128,
                    signal: None,
                    oom_killed: false,
                    started_at: None,
                    finished_at: crate::logs::timestamp(),
                    error: Some(message.clone()),
                    message: None,
                },
            );
            if let Ok(c) = Container::load(args.root.join(&args.id)) {
                delete(c);
            }
            reply(&format!("error {message}"));
            1
        }
    }
}

fn delete(mut container: Container) {
    if let Err(e) = container.delete(true) {
        tracing::warn!("deleting container {}: {e}", container.id());
    }
}

type Pipes = (OwnedFd, OwnedFd);

fn create_and_start(args: &ShimArgs) -> Result<(Container, PidFd, Pipes), String> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let mut container = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map_err(|e| e.to_string())?
        .with_stdout(out_w)
        .with_stderr(err_w)
        .validate_id()
        .map_err(|e| e.to_string())?
        .as_init(args.state.join("bundle"))
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("creating the container: {e}"))?;
    let pid = container
        .pid()
        .ok_or("the container has no init process")?
        .as_raw();
    // Opened before start so that the exit cannot be missed.
    let init = PidFd::open(pid).map_err(|e| format!("watching pid {pid}: {e}"))?;
    if let Err(e) = container.start() {
        delete(container);
        return Err(format!("starting the container: {e}"));
    }
    Ok((container, init, (out_r, err_r)))
}

/// Copies output to the log until the init process exits and the pipes
/// are drained, then reaps it.
fn relay_until_exit(
    log: &Path,
    init: &PidFd,
    (out, err): Pipes,
) -> io::Result<super::pidfd::Status> {
    let mut file = OpenOptions::new().create(true).append(true).open(log)?;
    let mut writers = [
        LineWriter::new(Stream::Stdout),
        LineWriter::new(Stream::Stderr),
    ];
    let mut open = [true, true];
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the pidfd outlives every borrow below.
    let init_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(init.raw()) };
    loop {
        let fds = [&out, &err];
        let mut polls: Vec<PollFd> = Vec::new();
        let mut which = Vec::new();
        for (i, fd) in fds.iter().enumerate() {
            if open[i] {
                polls.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(Some(i));
            }
        }
        if !exited {
            polls.push(PollFd::new(init_fd, PollFlags::POLLIN));
            which.push(None);
        }
        if polls.is_empty() {
            break;
        }
        // Once the process is gone, give lingering writers a moment only.
        let timeout = if exited {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut polls, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<(Option<usize>, bool)> = polls
            .iter()
            .zip(&which)
            .map(|(p, w)| (*w, p.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        for (w, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match w {
                Some(i) => {
                    let n = nix::unistd::read(fds[i].as_raw_fd(), &mut buf).unwrap_or(0);
                    if n == 0 {
                        open[i] = false;
                        writers[i].finish(&mut file)?;
                    } else {
                        writers[i].write(&mut file, &buf[..n])?;
                    }
                }
                None => exited = true,
            }
        }
    }
    for w in &mut writers {
        w.finish(&mut file)?;
    }
    init.wait()
}
