//! `--pidfd-socket`: hand the caller a pidfd of the new process.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::console::send_fd;

/// Opens a pidfd for `pid` and sends it over the unix socket at `socket`.
pub fn send(socket: &Path, pid: i32) -> Result<(), String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = nix::Error::result(fd).map_err(|e| format!("pidfd_open({pid}): {e}"))?;
    // SAFETY: the syscall returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("connect to pidfd socket {}: {e}", socket.display()))?;
    send_fd(stream.as_raw_fd(), &fd, b"pidfd")
        .map_err(|e| format!("send pidfd over {}: {e}", socket.display()))
}
