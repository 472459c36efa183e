//! `start`: release a created container's init to exec the user's process.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use crate::error::Error;
use crate::hooks::{self, Kind};
use crate::state::{Container, Status, Store, EXEC_FIFO};

/// How often `start` re-checks that the init is still alive while it waits.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// Starts container `id`.
pub fn start(store: &Store, id: &str) -> Result<(), Error> {
    let (_lock, c) = store.lock(id)?;
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::Usage(
                "cannot start a container that has stopped".into(),
            ))
        }
        Status::Running | Status::Paused => {
            return Err(Error::Usage(
                "cannot start an already running container".into(),
            ))
        }
        Status::Creating => {
            return Err(Error::Usage(
                "cannot start a container that is still being created".into(),
            ))
        }
    }
    let path = c.dir.join(EXEC_FIFO);
    // Non-blocking, so a dead init cannot leave us stuck in open(2); the
    // poll below then waits for the init's byte.
    let fifo = nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys(format!("open {}", path.display())))?;
    let (mut reply, mut failed) = (Vec::new(), false);
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(
            &mut fds,
            PollTimeout::try_from(LIVENESS_CHECK).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll exec fifo")(e)),
        };
        if ready > 0 {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(&fifo, &mut buf) {
                Ok(n) if n > 0 && buf[0] == b'0' => break,
                Ok(n) if n > 0 => {
                    // The init's startContainer hook failed; it sends why and exits.
                    reply.extend_from_slice(&buf[1..n]);
                    failed = true;
                }
                Ok(_) if failed => {
                    let msg = String::from_utf8_lossy(&reply).into_owned();
                    remove_fifo(&path)?;
                    return Err(Error::Usage(msg));
                }
                Ok(_) | Err(nix::Error::EAGAIN) => {}
                Err(e) => return Err(Error::sys("read exec fifo")(e)),
            }
            if failed {
                continue;
            }
        }
        if c.live_pid().is_none() {
            return Err(Error::Usage(
                "cannot start a container that has stopped".into(),
            ));
        }
    }
    remove_fifo(&path)?;
    run_poststart(&c)
}

fn remove_fifo(path: &std::path::Path) -> Result<(), Error> {
    std::fs::remove_file(path).map_err(Error::io(format!("remove {}", path.display())))
}

/// Runs the poststart hooks; if one fails, the container is stopped and the
/// failure reported (runtime spec 1.3).
fn run_poststart(c: &Container) -> Result<(), Error> {
    let h = c.saved.hooks.as_ref();
    if !hooks::has(h, Kind::Poststart) {
        return Ok(());
    }
    let state = c.oci_state().to_string();
    if let Err(e) = hooks::run(h, Kind::Poststart, &state) {
        if let Some(pid) = c.live_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        return Err(Error::Usage(e.to_string()));
    }
    Ok(())
}
