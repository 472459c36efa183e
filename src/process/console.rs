//! Terminals: a pty made inside the container (from its own devpts
//! instance), whose master goes over a unix socket to whoever holds the
//! other end: the engine's console socket, or brig itself when it relays a
//! foreground `run` or `exec`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

use super::setup::{sys, SetupError};

/// Makes a pty, sends its master over `socket`, and makes the slave this
/// process's stdio and controlling terminal (the caller is a session
/// leader). With `bind_console`, /dev/console shows the slave too.
pub fn create(
    socket: RawFd,
    size: Option<oci_spec::runtime::Box>,
    bind_console: bool,
) -> Result<(), SetupError> {
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open /dev/ptmx"))?;
    let fd = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int we own.
    nix::Error::result(unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &unlock) })
        .map_err(sys("unlock pty"))?;
    if let Some(b) = size {
        let ws = libc::winsize {
            ws_row: b.height() as u16,
            ws_col: b.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we own.
        nix::Error::result(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })
            .map_err(sys("set process.consoleSize"))?;
    }
    // TIOCGPTPEER opens the slave from the master itself, with no path
    // lookup that the container could redirect.
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            fd,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = nix::Error::result(slave).map_err(sys("open pty slave (TIOCGPTPEER)"))?;
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if bind_console {
        bind_dev_console(fd)?;
    }
    send_fd(socket, &master, b"/dev/ptmx")
        .map_err(sys("send the pty master over the console socket"))?;
    drop(master);
    for target in 0..3 {
        // SAFETY: dup2 onto stdio numbers; the slave stays open until dropped.
        nix::Error::result(unsafe { libc::dup2(slave.as_raw_fd(), target) })
            .map_err(sys("dup2 pty slave"))?;
    }
    // SAFETY: TIOCSCTTY on our stdin, which is now the slave.
    nix::Error::result(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })
        .map_err(sys("make the pty the controlling terminal"))?;
    Ok(())
}

/// Bind-mounts the pty slave onto /dev/console, as runc does.
fn bind_dev_console(master: RawFd) -> Result<(), SetupError> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into n.
    nix::Error::result(unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) })
        .map_err(sys("get pty number"))?;
    let slave = format!("/dev/pts/{n}");
    // The container's /dev is brig's tmpfs; the file is the mount point.
    let _ = open(
        "/dev/console",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    );
    mount(
        Some(Path::new(&slave)),
        "/dev/console",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(format!("bind {slave} onto /dev/console")))
}

/// Sends `fd` with SCM_RIGHTS; the payload is the file's name, as runc sends it.
pub fn send_fd(socket: RawFd, fd: &impl AsRawFd, name: &[u8]) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        socket,
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives an fd sent with SCM_RIGHTS.
pub fn recv_fd(socket: RawFd) -> nix::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(nix::Error::EBADMSG)
}
