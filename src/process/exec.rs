//! A process that `exec` adds to a running container: it has already joined
//! the container's namespaces and cgroup (see `spawn`); here it takes the
//! container's credentials and limits and execs.
//!
//! It stays non-dumpable until execve, so the container's processes cannot
//! reach its memory or fds (CVE-2016-9962), and only the capabilities the
//! process asks for reach it (CVE-2022-29162).

use std::os::fd::RawFd;

use oci_spec::runtime::Process;

use super::capabilities::Sets;
use super::console;
use super::setup::{self, sys, Exec, SetupError};
use crate::sync::Channel;

/// Everything the process needs, prepared by `exec` before any fork.
pub struct Prepared<'a> {
    pub id: &'a str,
    /// The container was created with `--no-new-keyring`.
    pub no_new_keyring: bool,
    pub process: &'a Process,
    pub caps: Sets,
    pub in_userns: bool,
    pub preserve_fds: i32,
    /// Socket to send the pty master over, when process.terminal is set.
    pub console: Option<RawFd>,
    /// The container's linux.seccomp, compiled by `exec`.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Socket to brig for the SCMP_ACT_NOTIFY listener.
    pub agent: Option<RawFd>,
}

/// Runs the process's setup and execs it; never returns.
pub fn run(p: &Prepared, chan: Channel) -> ! {
    let exec = setup::report_and_wait(&chan, setup(p));
    exec.exec_reporting(&chan)
}

fn borrow_inherited(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fd belongs to brig's socketpair, which stays open in this
    // forked process until it execs.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn setup(p: &Prepared) -> Result<Exec, SetupError> {
    setup::reset_signals()?;
    setup::set_dumpable(false)?;
    if let Some(sock) = p.console {
        nix::unistd::setsid().map_err(sys("setsid"))?;
        console::create(sock, p.process.console_size(), false)?;
    }
    if !p.no_new_keyring {
        setup::join_session_keyring(p.id)?;
    }
    // The listener goes to brig, which knows this process's host pid and
    // relays it to the agent.
    let agent = match p.agent {
        Some(fd) => {
            let fd = nix::unistd::dup(borrow_inherited(fd))
                .map_err(sys("dup the agent relay socket"))?;
            Some(crate::seccomp::Agent::over(
                std::os::unix::net::UnixStream::from(fd),
                0,
            ))
        }
        None => None,
    };
    let seccomp = p
        .seccomp
        .map(|filter| crate::seccomp::Pending { filter, agent });
    setup::finalize(p.process, &p.caps, p.in_userns, p.preserve_fds, seccomp)
}
