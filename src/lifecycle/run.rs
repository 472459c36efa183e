//! `run`: create + start, then wait for the container and forward signals.

use nix::sys::signal::SigmaskHow;

use super::wait::{forwarded_signals, wait_for};
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
    let foreground = CreateOptions {
        relay_terminal: !detach,
        ..o.clone()
    };
    let created = create(store, &foreground)?;
    if let Err(e) = start(store, &o.id) {
        let _ = delete(store, &o.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = wait_for(created.pid, &signals, created.pty);
    if let Err(e) = delete(store, &o.id, true) {
        logging::warn(&format!("removing container {} after it exited: {e}", o.id));
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals), None);
    code
}
