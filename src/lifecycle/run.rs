//! `run`: create + start, then wait for the container and forward signals.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{create, delete, start, CreateOptions};
use crate::error::Error;
use crate::logging;
use crate::state::Store;

/// Runs a container; returns its exit code (128 + N when signal N killed it).
pub fn run(store: &Store, o: &CreateOptions, detach: bool) -> Result<i32, Error> {
    // Block the signals to forward before the init exists, so none is lost;
    // the init unblocks everything for itself.
    let signals = forwarded_signals();
    if !detach {
        signals
            .thread_block()
            .map_err(Error::sys("block signals"))?;
    }
    let pid = create(store, o)?;
    if let Err(e) = start(store, &o.id) {
        let _ = delete(store, &o.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(pid, &signals);
    if let Err(e) = delete(store, &o.id, true) {
        logging::warn(&format!("removing container {} after it exited: {e}", o.id));
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals), None);
    code
}

/// Every signal a user may send to `brig run`, plus SIGCHLD to learn of the exit.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGPIPE] {
        set.remove(s);
    }
    set
}

/// Waits for the init to exit, forwarding every other signal to it.
fn wait_forwarding(init: i32, signals: &SigSet) -> Result<i32, Error> {
    loop {
        let sig = signals.wait().map_err(Error::sys("sigwait"))?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(Pid::from_raw(init), sig);
            continue;
        }
        // Reap every exited child: orphans re-parented to brig, and the init.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p.as_raw() == init => return Ok(code),
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == init => {
                    return Ok(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys("waitpid")(e)),
            }
        }
    }
}
