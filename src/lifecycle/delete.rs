//! `delete`: remove a stopped container, or (with --force) kill and remove.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::Error;
use crate::hooks::{self, Kind};
use crate::logging;
use crate::state::{Container, StateError, Status, Store};

/// How long delete waits for a killed init to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Deletes container `id`: its processes (if allowed), cgroup and state.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<(), Error> {
    let (_lock, c) = match store.lock(id) {
        // containerd deletes with --force after every exit, whether or not
        // the container still exists.
        Err(StateError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    match c.status() {
        // We hold the lock, so the create that wrote this died half-way.
        Status::Stopped | Status::Creating => {}
        Status::Created => kill_and_wait(&c)?,
        Status::Running | Status::Paused if force => kill_and_wait(&c)?,
        s => {
            return Err(Error::Usage(format!(
                "cannot delete container {id} that is not stopped: {}",
                s.as_str()
            )))
        }
    }
    if let Some(cg) = c.cgroup() {
        // Processes that outlived the init (no pid namespace) go too.
        if !cg.pids()?.is_empty() {
            cg.kill_all(libc::SIGKILL)?;
        }
        cg.destroy()?;
    }
    run_poststop(&c);
    store.remove(&c)?;
    Ok(())
}

/// Runs the poststop hooks once the container is gone; a failure is only a
/// warning, and delete goes on (runtime spec).
fn run_poststop(c: &Container) {
    let h = c.saved.hooks.as_ref();
    if !hooks::has(h, Kind::Poststop) {
        return;
    }
    let mut state = c.oci_state();
    state["status"] = "stopped".into();
    if let Err(e) = hooks::run(h, Kind::Poststop, &state.to_string()) {
        logging::warn(&e.to_string());
    }
}

/// SIGKILLs the init (taking its pid namespace with it) and waits until it is gone.
fn kill_and_wait(c: &Container) -> Result<(), Error> {
    let Some(pid) = c.live_pid() else {
        return Ok(());
    };
    if let Some(cg) = c.cgroup() {
        // A frozen process cannot die; kill_all thaws after signalling.
        cg.kill_all(libc::SIGKILL)?;
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => {}
        Err(e) => return Err(Error::sys(format!("kill container init {pid}"))(e)),
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while c.live_pid().is_some() {
        if Instant::now() > deadline {
            return Err(Error::Usage(format!(
                "container init {pid} did not die after SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
