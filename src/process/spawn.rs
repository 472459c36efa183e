//! Forking a container process: the init for `create`, or a process that
//! joins a running container for `exec`.
//!
//! brig forks a stage 1 process that enters the namespaces (user namespace
//! first, with the id maps written by the parent), then forks the init,
//! which is the first process of the new pid and time namespaces (they only
//! apply to children). Stage 1 reports the init's pid and exits. brig is a
//! child subreaper, so the init is re-parented to brig: `run` can wait for
//! it, and a failed create can kill and reap it. Once brig exits, the init
//! passes to the caller's subreaper (containerd's shim, conmon).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::cgroups::Cgroup;
use crate::namespaces::Plan;
use crate::sync::{self, Channel, ChildFailed, Message, SyncError};

/// What to spawn: the namespaces to enter, the fds to drop, and the code
/// the process runs once inside (it execs or exits, never returns).
pub struct Child<'a> {
    pub ns: &'a Plan,
    /// Fds of brig's that the children must close at once (the state lock).
    pub close_fds: &'a [RawFd],
    pub run: &'a dyn Fn(Channel) -> std::convert::Infallible,
}

/// The spawned process, waiting to report that it is set up.
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
    #[error("{0}")]
    Hook(String),
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

/// Where stage 1 goes before it enters any namespace, so that the cgroup
/// namespace is rooted there and the init is born inside it.
pub enum Placement<'a> {
    /// No cgroup (an unprivileged caller).
    None,
    /// Born in this cgroup v2 directory: clone3 with CLONE_INTO_CGROUP.
    Born(BorrowedFd<'a>),
    /// Moved by writing its pid (cgroup v1 and hybrid hosts).
    Moved(&'a dyn Fn(i32) -> Result<(), String>),
}

/// Forks stage 1 and returns once the init exists.
pub fn spawn(p: &Child, placement: Placement) -> Result<Spawned, SpawnError> {
    become_subreaper()?;
    // One socket per process: stage 1 and the init run concurrently, and
    // their messages must not race on a shared socket.
    let (parent, child) = sync::pair()?;
    let (parent_init, child_init) = sync::pair()?;
    let born_in = match &placement {
        Placement::Born(fd) => Some(fd.as_raw_fd()),
        _ => None,
    };
    match fork_into(born_in)? {
        ForkResult::Child => {
            drop(parent);
            drop(parent_init);
            for &fd in p.close_fds {
                close_in_child(fd);
            }
            stage1(p, child, child_init)
        }
        ForkResult::Parent { child: stage1 } => {
            drop(child);
            drop(child_init);
            let placed = match placement {
                Placement::Moved(place) => place(stage1.as_raw()),
                Placement::None | Placement::Born(_) => Ok(()),
            };
            let res = placed
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

/// Spawns `child` inside `cgroup`: born there on cgroup v2 (clone3 with
/// CLONE_INTO_CGROUP), moved there right after the fork otherwise or on
/// kernels without clone3.
pub fn spawn_in(child: &Child, cgroup: Option<&Cgroup>) -> Result<Spawned, SpawnError> {
    let Some(cg) = cgroup else {
        return spawn(child, Placement::None);
    };
    if let Some(dir) = cg.v2_dir_fd() {
        match spawn(child, Placement::Born(dir.as_fd())) {
            Err(SpawnError::Fork(nix::Error::ENOSYS | nix::Error::E2BIG | nix::Error::EINVAL)) => {}
            other => return other,
        }
    }
    let place = |pid: i32| cg.add_process(pid).map_err(|e| e.to_string());
    spawn(child, Placement::Moved(&place))
}

/// The kernel's struct clone_args, up to the `cgroup` field (version 2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks, born directly into the cgroup `cgroup_fd` when given (clone3 with
/// CLONE_INTO_CGROUP); kernels without it get a plain fork and the caller
/// moves the child (the parent falls back in `spawn`).
fn fork_into(cgroup_fd: Option<RawFd>) -> Result<ForkResult, SpawnError> {
    if let Some(fd) = cgroup_fd {
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd as u64,
            ..Default::default()
        };
        // SAFETY: like fork(2) (no CLONE_VM, no new stack): the child gets a
        // copy of this single-threaded process; args is a live repr(C) struct
        // whose size is passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        return match nix::Error::result(rc) {
            Ok(0) => Ok(ForkResult::Child),
            Ok(pid) => Ok(ForkResult::Parent {
                child: Pid::from_raw(pid as i32),
            }),
            Err(e) => Err(SpawnError::Fork(e)),
        };
    }
    // SAFETY: brig is single-threaded, so the child may run any code; it
    // leaves through _exit (stage 1) or execve (the init), never by returning.
    unsafe { fork() }.map_err(SpawnError::Fork)
}

/// Serves stage 1's requests until it names the init.
fn handle_stage1(p: &Child, chan: &Channel, stage1: Pid) -> Result<Pid, SpawnError> {
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

fn stage1(p: &Child, chan: Channel, init_chan: Channel) -> ! {
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
            match (p.run)(init_chan) {}
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
    /// Waits until the process is set up, or returns its error.
    pub fn wait_ready(&self) -> Result<(), SpawnError> {
        Ok(self.chan.expect(Message::Ready, "Ready")?)
    }

    /// Like `wait_ready`, and runs `run_hooks` when the init asks (its mounts
    /// are made); the state JSON it returns goes back to the init.
    pub fn wait_ready_serving_hooks(
        &self,
        run_hooks: &dyn Fn() -> Result<String, String>,
    ) -> Result<(), SpawnError> {
        loop {
            match self.chan.recv()? {
                Message::Ready => return Ok(()),
                Message::RunHooks => {
                    let state = run_hooks().map_err(SpawnError::Hook)?;
                    self.chan.send(&Message::HooksDone(state))?;
                }
                Message::Error(e) => return Err(SpawnError::Child(e)),
                got => {
                    return Err(SyncError::Unexpected {
                        expected: "Ready",
                        got,
                    }
                    .into())
                }
            }
        }
    }

    /// After `release`: waits until the process has exec'd its program (the
    /// socket closes on exec) or returns why execve failed.
    pub fn wait_exec(&self) -> Result<(), SpawnError> {
        match self.chan.recv() {
            Err(SyncError::Closed) => Ok(()),
            Ok(Message::Error(e)) => Err(SpawnError::Child(e)),
            Ok(got) => Err(SyncError::Unexpected {
                expected: "exec",
                got,
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lets the init go on to wait for `start`.
    pub fn release(&self) -> Result<(), SpawnError> {
        Ok(self.chan.send(&Message::Go)?)
    }

    /// Kills and reaps the init after a failed create.
    pub fn abort(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}
