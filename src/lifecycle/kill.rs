//! `kill`: send a signal to the container's init, or to all its processes.

use std::fs;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::Error;
use crate::signals;
use crate::state::{Container, Status, Store};

/// Sends `signal` (a name or number) to container `id`.
pub fn kill(store: &Store, id: &str, signal: &str, all: bool) -> Result<(), Error> {
    let sig = signals::parse(signal)?;
    let c = store.load(id)?;
    if all && c.status() == Status::Stopped {
        // runc signals whatever outlived the init (no pid namespace), and
        // `--all` of a stopped container is not an error.
        if let Some(cg) = c.cgroup() {
            return Ok(cg.kill_all(sig)?);
        }
    }
    let pid = match c.status() {
        Status::Created | Status::Running | Status::Paused => c.live_pid(),
        _ => None,
    }
    .ok_or_else(|| Error::Usage("container not running".into()))?;
    if all {
        signal_all(&c, pid, sig)
    } else {
        send(pid, sig)
    }
}

fn send(pid: i32, sig: i32) -> Result<(), Error> {
    let signal = Signal::try_from(sig).ok();
    let res = match signal {
        Some(s) => signal::kill(Pid::from_raw(pid), s),
        // Real-time signals are not in nix's enum.
        None => {
            // SAFETY: kill(2) with a pid and a validated signal number.
            nix::Error::result(unsafe { libc::kill(pid, sig) }).map(drop)
        }
    };
    match res {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(Error::sys(format!("kill {pid} with signal {sig}"))(e)),
    }
}

/// Signals every process of the container: those in its cgroup, or
/// without one, those in its pid namespace (found through /proc).
fn signal_all(c: &Container, init: i32, sig: i32) -> Result<(), Error> {
    if let Some(cg) = c.cgroup() {
        return Ok(cg.kill_all(sig)?);
    }
    if !c.saved.own_pid_namespace {
        return Err(Error::Usage(
            "kill --all: the container has neither a cgroup nor its own pid namespace".into(),
        ));
    }
    for pid in pids_in_namespace_of(init)? {
        send(pid, sig)?;
    }
    Ok(())
}

/// Host pids of all processes in the pid namespace of `init`, init first.
pub fn pids_in_namespace_of(init: i32) -> Result<Vec<i32>, Error> {
    let ns = fs::read_link(format!("/proc/{init}/ns/pid"))
        .map_err(Error::io(format!("read pid namespace of {init}")))?;
    let mut out = vec![init];
    for entry in fs::read_dir("/proc")
        .map_err(Error::io("read /proc"))?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != init && fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|l| l == ns) {
            out.push(pid);
        }
    }
    Ok(out)
}
