//! Forking the container's init from `create`.
//!
//! brig forks a stage 1 process that enters the namespaces (user namespace
//! first, with the id maps written by the parent), then forks the init,
//! which is the first process of the new pid and time namespaces (they only
//! apply to children). Stage 1 reports the init's pid and exits. brig is a
//! child subreaper, so the init is re-parented to brig: `run` can wait for
//! it, and a failed create can kill and reap it. Once brig exits, the init
//! passes to the caller's subreaper (containerd's shim, conmon).

use std::os::fd::RawFd;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use super::init::{self, Prepared};
use crate::sync::{self, Channel, ChildFailed, Message, SyncError};

/// The spawned init, waiting to report that it is set up.
pub struct Spawned {
    pub pid: Pid,
    chan: Channel,
}

/// Spawning failed before the init existed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("fork: {0}")]
    Fork(nix::Error),
    #[error("prctl(PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(nix::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Child(String),
    #[error("{0}")]
    IdMaps(String),
    #[error("{0}")]
    Place(String),
}

impl From<ChildFailed> for SpawnError {
    fn from(e: ChildFailed) -> Self {
        match e {
            ChildFailed::Reported(m) => SpawnError::Child(m),
            ChildFailed::Sync(s) => SpawnError::Sync(s),
        }
    }
}

/// Makes the calling process the reaper of its orphaned descendants.
pub fn become_subreaper() -> Result<(), SpawnError> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    nix::Error::result(rc)
        .map(drop)
        .map_err(SpawnError::Subreaper)
}

/// Forks stage 1 and returns once the init exists. `place` puts stage 1
/// into the container's cgroup before it enters any namespace, so the
/// cgroup namespace is rooted there and the init is born inside it.
pub fn spawn(
    p: &Prepared,
    place: &dyn Fn(i32) -> Result<(), String>,
) -> Result<Spawned, SpawnError> {
    become_subreaper()?;
    // One socket per process: stage 1 and the init run concurrently, and
    // their messages must not race on a shared socket.
    let (parent, child) = sync::pair()?;
    let (parent_init, child_init) = sync::pair()?;
    // SAFETY: brig is single-threaded, so the child may run any code; it
    // leaves through _exit (stage 1) or execve (the init), never by returning.
    match unsafe { fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Child => {
            drop(parent);
            drop(parent_init);
            close_in_child(p.lock_fd);
            stage1(p, child, child_init)
        }
        ForkResult::Parent { child: stage1 } => {
            drop(child);
            drop(child_init);
            let res = place(stage1.as_raw())
                .map_err(SpawnError::Place)
                .and_then(|()| Ok(parent.send(&Message::Placed)?))
                .and_then(|()| handle_stage1(p, &parent, stage1));
            if res.is_err() {
                let _ = kill(stage1, Signal::SIGKILL);
            }
            let _ = waitpid(stage1, None);
            let pid = res?;
            Ok(Spawned {
                pid,
                chan: parent_init,
            })
        }
    }
}

/// Serves stage 1's requests until it names the init.
fn handle_stage1(p: &Prepared, chan: &Channel, stage1: Pid) -> Result<Pid, SpawnError> {
    loop {
        match chan.recv()? {
            Message::WriteIdMaps => {
                p.ns.write_id_maps(stage1.as_raw())
                    .map_err(|e| SpawnError::IdMaps(e.to_string()))?;
                chan.send(&Message::IdMapsWritten)?;
            }
            Message::InitPid(pid) => return Ok(Pid::from_raw(pid)),
            Message::Error(e) => return Err(SpawnError::Child(e)),
            got => {
                return Err(SyncError::Unexpected {
                    expected: "InitPid",
                    got,
                }
                .into())
            }
        }
    }
}

fn close_in_child(fd: RawFd) {
    // SAFETY: closes this process's copy of the lock fd only; the parent's
    // stays open (and locked).
    unsafe { libc::close(fd) };
}

fn stage1(p: &Prepared, chan: Channel, init_chan: Channel) -> ! {
    if chan.expect(Message::Placed, "Placed").is_err() {
        exit(1);
    }
    let entered = p.ns.enter(|| {
        chan.send(&Message::WriteIdMaps)
            .map_err(|e| e.to_string())?;
        chan.expect(Message::IdMapsWritten, "IdMapsWritten")
            .map_err(|e| e.to_string())
    });
    if let Err(e) = entered {
        let _ = chan.send(&Message::Error(e.to_string()));
        exit(1);
    }
    // SAFETY: still single-threaded; see spawn().
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(chan);
            init::run(p, init_chan)
        }
        Ok(ForkResult::Parent { child }) => {
            let code = i32::from(chan.send(&Message::InitPid(child.as_raw())).is_err());
            exit(code)
        }
        Err(e) => {
            let _ = chan.send(&Message::Error(format!("fork the container init: {e}")));
            exit(1)
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: see init::exit; stage 1 must not run the parent's destructors.
    unsafe { libc::_exit(code) }
}

impl Spawned {
    /// Waits until the init is set up, or returns its error.
    pub fn wait_ready(&self) -> Result<(), SpawnError> {
        Ok(self.chan.expect(Message::Ready, "Ready")?)
    }

    /// Lets the init go on to wait for `start`.
    pub fn release(self) -> Result<(), SpawnError> {
        Ok(self.chan.send(&Message::Go)?)
    }

    /// Kills and reaps the init after a failed create.
    pub fn abort(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}
