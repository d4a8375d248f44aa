//! Process file descriptors: a pidfd refers to one process for good (no
//! pid reuse races), becomes readable when it exits, and lets its parent
//! collect the exit status.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c,
            Status::Signaled(s) => 128 + s,
        }
    }
}

pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// Waits (asynchronously) until the process has exited.
    pub async fn exited(&self) -> io::Result<()> {
        let owned = self.0.try_clone()?;
        // SAFETY: the AsyncFd owns `owned`, which stays open as long as it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        let _ = fd.readable().await?;
        Ok(())
    }

    /// Blocks until this child exits and reaps it. Works for clone children
    /// without an exit signal too (`__WALL`), as libcontainer makes them.
    pub fn wait(&self) -> io::Result<Status> {
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value to be filled in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: the fd is a valid pidfd and `info` outlives the call.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.0.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::__WALL,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: waitid filled `info` for an exited child.
            let status = unsafe { info.si_status() };
            return Ok(match info.si_code {
                libc::CLD_EXITED => Status::Exited(status),
                _ => Status::Signaled(status),
            });
        }
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
