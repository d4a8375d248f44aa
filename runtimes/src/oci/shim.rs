//! The container shim: a single-threaded process (no async runtime, no
//! other threads) that owns one container for its whole life. It creates
//! and starts the container with libcontainer, tells the agent on stdout
//! (`started <pid>` or `error <reason>`), relays the container's stdout and
//! stderr (or its terminal) to a CRI-format log file and to attached
//! clients (its attach socket, see [`super::attach`]), feeds their input
//! to the container's stdin, reaps the container's init process, records
//! how it ended in `exit.json`, and deletes the container.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::attach;
use super::pidfd::PidFd;
use super::{Exit, Started, Streams};
use crate::logs::{LineWriter, RotatingFile, Rotation, Stream};

/// The shim's command line, parsed by the binary.
#[derive(Clone, Debug)]
pub struct ShimArgs {
    pub id: String,
    /// This container's state directory (bundle, pid and exit files).
    pub state: PathBuf,
    /// libcontainer's state root.
    pub root: PathBuf,
    pub log: PathBuf,
    pub log_rotation: Rotation,
    /// The container's cgroup path (to tell an OOM kill).
    pub cgroup: String,
    /// Where the attach and console sockets go.
    pub sockets: PathBuf,
    pub streams: Streams,
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

/// Runs the shim; returns the process exit code.
pub fn run(args: ShimArgs) -> i32 {
    // A session of its own, so that signals meant for the agent's terminal
    // never reach the shim (it outlives the agent).
    let _ = nix::unistd::setsid();
    let _ = std::fs::create_dir_all(&args.state);
    let _ = std::fs::write(args.state.join("shim.pid"), std::process::id().to_string());
    match create_and_start(&args) {
        Ok((container, init, io)) => {
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
            let status = relay_until_exit(
                &args.log,
                args.log_rotation,
                &init,
                io,
                args.streams.stdin_once,
            );
            let code = status.as_ref().map(|s| s.code()).unwrap_or(255);
            let signal = match status {
                Ok(super::pidfd::Status::Signaled(s)) => Some(s),
                _ => None,
            };
            let exit = Exit {
                code,
                signal,
                oom_killed: signal == Some(libc::SIGKILL)
                    && crate::cgroups::Hierarchies::host().oom_killed(&args.cgroup),
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

/// The container's ends of its streams, as the shim holds them.
struct Io {
    out: OwnedFd,
    err: OwnedFd,
    /// The terminal's master end (a `tty` container's output and input).
    terminal: Option<OwnedFd>,
    /// The write end of its stdin (a `stdin` container without terminal).
    stdin: Option<OwnedFd>,
    /// Where attach clients connect.
    listener: Option<UnixListener>,
}

/// Receives the terminal's master end that the container's init sends on
/// the console socket.
fn receive_terminal(listener: &UnixListener) -> Result<OwnedFd, String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{FromRawFd, RawFd};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::from(10_000u16)).map_err(|e| e.to_string())? == 0 {
        return Err("the container's terminal never arrived".into());
    }
    let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("receiving the terminal: {e}"))?;
    for cmsg in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: the descriptor was just received; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err("no terminal in the console socket's message".into())
}

/// The error lines a failed init process left on the container's stderr,
/// read without waiting (its writers are gone, or going).
fn init_errors(stderr: &OwnedFd) -> Option<String> {
    let flags = nix::fcntl::fcntl(stderr.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).ok()?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(stderr.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = nix::unistd::read(stderr.as_raw_fd(), &mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(|l| l.split_once("ERROR ").map_or(l, |(_, rest)| rest).trim())
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn create_and_start(args: &ShimArgs) -> Result<(Container, PidFd, Io), String> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map_err(|e| e.to_string())?
        .with_stdout(out_w)
        .with_stderr(err_w);
    let console = attach::socket_path(&args.sockets, &args.id, "console");
    let console_listener = if args.streams.tty {
        let _ = std::fs::remove_file(&console);
        let l = UnixListener::bind(&console).map_err(|e| format!("console socket: {e}"))?;
        builder = builder.with_console_socket(Some(&console));
        Some(l)
    } else {
        None
    };
    let mut stdin = None;
    if args.streams.stdin && !args.streams.tty {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        builder = builder.with_stdin(r);
        stdin = Some(w);
    }
    let init = builder
        .validate_id()
        .map_err(|e| e.to_string())?
        .as_init(args.state.join("bundle"))
        .with_systemd(false)
        .with_detach(true);
    let mut container = super::signals::with_default_sigpipe(|| init.build()).map_err(|e| {
        match init_errors(&err_r) {
            // libcontainer's error names the step that failed; its init
            // process logged the cause to the container's stderr.
            Some(cause) => format!("creating the container: {e} ({cause})"),
            None => format!("creating the container: {e}"),
        }
    })?;
    let terminal = match &console_listener {
        Some(l) => match receive_terminal(l) {
            Ok(t) => Some(t),
            Err(e) => {
                delete(container);
                return Err(e);
            }
        },
        None => None,
    };
    let _ = std::fs::remove_file(&console);
    // Input nobody reads is dropped rather than block the relay.
    for fd in terminal.iter().chain(stdin.iter()) {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
    }
    let socket = attach::socket_path(&args.sockets, &args.id, "attach");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).ok();
    if let Some(l) = &listener {
        let _ = l.set_nonblocking(true);
    }
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
    let io = Io {
        out: out_r,
        err: err_r,
        terminal,
        stdin,
        listener,
    };
    Ok((container, init, io))
}

/// An attach client: its socket and the part of a frame read so far.
struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
}

/// Where a poll entry came from.
#[derive(Clone, Copy)]
enum Slot {
    /// 0 the stdout pipe, 1 the stderr pipe, 2 the terminal.
    Source(usize),
    Init,
    Listener,
    Client(usize),
}

/// Writes what a non-blocking `fd` takes of `data`; the rest is dropped.
fn feed(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

fn resize(terminal: &OwnedFd, json: &[u8]) {
    let Ok(size) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let dimension = |key: &str| size[key].as_u64().and_then(|n| u16::try_from(n).ok());
    let (Some(cols), Some(rows)) = (dimension("Width"), dimension("Height")) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer on a terminal fd.
    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Copies output to the log and to attached clients until the init
/// process exits and its streams are drained, feeding the clients' input
/// to the container; then reaps it.
fn relay_until_exit(
    log: &Path,
    rotation: Rotation,
    init: &PidFd,
    mut io: Io,
    stdin_once: bool,
) -> io::Result<super::pidfd::Status> {
    let mut file = RotatingFile::open(log, rotation)?;
    let mut writers = [
        LineWriter::new(Stream::Stdout),
        LineWriter::new(Stream::Stderr),
    ];
    let mut open = [true, true, io.terminal.is_some()];
    let mut exited = false;
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the pidfd outlives every borrow below.
    let init_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(init.raw()) };
    loop {
        if exited && !open.iter().any(|o| *o) {
            break;
        }
        let ready: Vec<Slot> = {
            let mut polls: Vec<PollFd> = Vec::new();
            let mut which = Vec::new();
            let sources = [Some(&io.out), Some(&io.err), io.terminal.as_ref()];
            for (i, fd) in sources.iter().enumerate() {
                if let (true, Some(fd)) = (open[i], fd) {
                    polls.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(Slot::Source(i));
                }
            }
            if !exited {
                polls.push(PollFd::new(init_fd, PollFlags::POLLIN));
                which.push(Slot::Init);
            }
            if let Some(l) = &io.listener {
                polls.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Listener);
            }
            for (i, c) in clients.iter().enumerate() {
                polls.push(PollFd::new(c.sock.as_fd(), PollFlags::POLLIN));
                which.push(Slot::Client(i));
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
            polls
                .iter()
                .zip(&which)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, w)| *w)
                .collect()
        };
        let mut gone: Vec<usize> = Vec::new();
        for slot in ready {
            match slot {
                Slot::Source(i) => {
                    let fd = match i {
                        0 => Some(&io.out),
                        1 => Some(&io.err),
                        _ => io.terminal.as_ref(),
                    };
                    let Some(fd) = fd else { continue };
                    let n = match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                        Ok(n) => n,
                        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                        // A terminal whose other end is gone says EIO.
                        Err(_) => 0,
                    };
                    let (w, channel) = if i == 1 {
                        (1, attach::STDERR)
                    } else {
                        (0, attach::STDOUT)
                    };
                    if n == 0 {
                        open[i] = false;
                        writers[w].finish(&mut file)?;
                        continue;
                    }
                    writers[w].write(&mut file, &buf[..n])?;
                    let frame = attach::frame(channel, &buf[..n]);
                    for (k, c) in clients.iter_mut().enumerate() {
                        if c.sock.write_all(&frame).is_err() {
                            gone.push(k);
                        }
                    }
                }
                Slot::Init => exited = true,
                Slot::Listener => {
                    let Some(l) = &io.listener else { continue };
                    while let Ok((sock, _)) = l.accept() {
                        let _ = sock.set_nonblocking(false);
                        // A client that stops reading is let go, not waited for.
                        let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
                        clients.push(Client {
                            sock,
                            buf: Vec::new(),
                        });
                    }
                }
                Slot::Client(k) => {
                    let c = &mut clients[k];
                    let n = c.sock.read(&mut buf).unwrap_or(0);
                    c.buf.extend_from_slice(&buf[..n]);
                    let frames = if n == 0 {
                        None
                    } else {
                        attach::take_frames(&mut c.buf)
                    };
                    let Some(frames) = frames else {
                        gone.push(k);
                        continue;
                    };
                    for (channel, data) in frames {
                        match channel {
                            attach::STDIN => {
                                if let Some(fd) = io.stdin.as_ref().or(io.terminal.as_ref()) {
                                    feed(fd, &data);
                                }
                            }
                            attach::RESIZE => {
                                if let Some(t) = &io.terminal {
                                    resize(t, &data);
                                }
                            }
                            attach::CLOSE if data.first() == Some(&attach::STDIN) && stdin_once => {
                                io.stdin = None;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for k in gone.into_iter().rev() {
            clients.remove(k);
            // stdinOnce: the first attach session that ends closes stdin.
            if stdin_once {
                io.stdin = None;
            }
        }
    }
    for w in &mut writers {
        w.finish(&mut file)?;
    }
    drop(clients);
    init.wait()
}
