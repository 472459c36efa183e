//! Waiting in the foreground (`run`, `exec`): reap the process, forward
//! signals to it, and relay a terminal between the user's and the container's.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::Error;

/// Every signal a user may send to a foreground brig, plus SIGCHLD to learn
/// of the exit. Blocked before the process exists, so none is lost.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGPIPE] {
        set.remove(s);
    }
    set
}

/// Puts the user's terminal in raw mode and restores it when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copies the user's window size to the container's terminal.
fn copy_winsize(pty: &OwnedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize we own.
    unsafe {
        // A user's terminal of size 0x0 (no real tty) keeps consoleSize.
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Waits for `pid` to exit and returns its exit code (128 + N for signal N);
/// with `pty`, relays the terminal meanwhile. `signals` must be blocked.
pub fn wait_for(pid: i32, signals: &SigSet, pty: Option<OwnedFd>) -> Result<i32, Error> {
    let sfd =
        SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).map_err(Error::sys("signalfd"))?;
    let _raw = pty.as_ref().and_then(|_| RawMode::enter());
    if let Some(p) = &pty {
        copy_winsize(p);
    }
    let mut stdin_open = pty.is_some();
    let mut pty_open = pty.is_some();
    // Only a relayed terminal needs a buffer (or std's stdin, which allocates one).
    let mut buf = if pty.is_some() {
        vec![0u8; 16 * 1024]
    } else {
        Vec::new()
    };
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(p), true) = (&pty, pty_open) {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let stdin = stdin_open.then(std::io::stdin);
        if let Some(stdin) = &stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll")(e)),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut idx = 1;
        if let (Some(p), true) = (&pty, pty_open) {
            if ready[idx] {
                match nix::unistd::read(p, &mut buf) {
                    Ok(0) | Err(nix::Error::EIO) => pty_open = false,
                    Ok(n) => write_all(1, &buf[..n]),
                    Err(_) => {}
                }
            }
            idx += 1;
        }
        if stdin_open && ready[idx] {
            match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(p) = &pty {
                        write_all(p.as_raw_fd(), &buf[..n]);
                    }
                }
            }
        }
        if ready[0] {
            let Ok(Some(info)) = sfd.read_signal() else {
                continue;
            };
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                if let Some(code) = reap(pid)? {
                    if let Some(p) = &pty {
                        drain(p, &mut buf);
                    }
                    return Ok(code);
                }
            } else if sig == libc::SIGWINCH && pty.is_some() {
                if let Some(p) = &pty {
                    copy_winsize(p);
                }
            } else {
                // SAFETY: kill(2) with our child's pid and a signal we received.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }
}

/// Reaps exited children (orphans re-parented to brig too); the exit code
/// once `pid` is among them.
fn reap(pid: i32) -> Result<Option<i32>, Error> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == Pid::from_raw(pid) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, s, _)) if p == Pid::from_raw(pid) => {
                return Ok(Some(128 + s as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(None),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("waitpid")(e)),
        }
    }
}

/// Copies what the container wrote before it exited.
fn drain(pty: &OwnedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        pty,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while let Ok(n) = nix::unistd::read(pty, buf) {
        if n == 0 {
            break;
        }
        write_all(1, &buf[..n]);
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes bytes we own to an fd number that stays open.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && nix::Error::last() == nix::Error::EINTR {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}
