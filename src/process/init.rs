//! The container's init: runs inside the new namespaces, builds the
//! container around itself, waits for `start`, and execs the user's process.
//!
//! CVE-2019-5736: the init is a fork of brig and never execs the brig binary
//! inside the container, so no container process ever runs with
//! /proc/self/exe pointing at the host's brig, except this init before its
//! exec. The init makes itself non-dumpable first, which closes its
//! /proc/PID/{exe,fd,mem} to every other process in the container (and the
//! kernel makes it dumpable again at execve of the user's binary, when exe
//! no longer points at brig). That avoids runc's per-container copy of the
//! binary into a memfd.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::capabilities::Sets;
use super::setup::{self, exit, sys, Exec, SetupError};
use crate::hooks::{self, Kind};
use crate::namespaces::Plan;
use crate::rootfs;
use crate::state::EXEC_FIFO;
use crate::sync::{Channel, Message};

/// Everything the init needs, prepared by `create` before any fork.
pub struct Prepared<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub ns: Plan,
    pub caps: Sets,
    /// The container's state directory (its own open file, not the locked
    /// one), holding the exec fifo.
    pub state_dir: BorrowedFd<'a>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Socket to send the pty master over, when process.terminal is set.
    pub console: Option<std::os::fd::RawFd>,
    /// linux.seccomp, compiled by `create`.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
}

/// Runs the init; never returns.
pub fn run(p: &Prepared, chan: Channel) -> ! {
    // Create records the container before it says go; if it died, so do we.
    let (exec, hook_state) = setup::report_and_wait(&chan, setup(p, &chan));
    drop(chan);
    if let Err(e) = wait_for_start(p.state_dir, p.spec, &hook_state) {
        eprintln!("brig: container init: {e}");
        exit(1);
    }
    exec.exec()
}

/// The whole setup, top to bottom.
fn setup(p: &Prepared, chan: &Channel) -> Result<(Exec, String), SetupError> {
    setup::reset_signals()?;
    setup::set_dumpable(false)?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // Device nodes and created directories get exactly the modes asked for.
    nix::sys::stat::umask(Mode::empty());
    if p.ns.creates(LinuxNamespaceType::Network) {
        bring_up_loopback()?;
    }
    let spec = p.spec;
    let layout = rootfs::Options {
        spec,
        rootfs: &p.rootfs,
        in_userns: p.ns.in_user_namespace(),
        cgroup_ns: p.ns.creates(LinuxNamespaceType::Cgroup),
        no_pivot: p.no_pivot,
    };
    // The agent's socket is a host path: reach it before pivot_root.
    let agent = match p.seccomp {
        Some(f) => f.connect_agent()?,
        None => None,
    };
    rootfs::prepare(&layout)?;
    let hook_state = run_create_hooks(spec, chan)?;
    rootfs::enter(&layout)?;
    if let Some(sock) = p.console {
        let size = spec.process().as_ref().and_then(|p| p.console_size());
        super::console::create(sock, size, true)?;
    }
    set_hostname(spec)?;
    write_sysctls(spec)?;
    rootfs::finish(spec)?;
    let process = spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    if !p.no_new_keyring {
        setup::join_session_keyring(p.id)?;
    }
    let seccomp = p
        .seccomp
        .map(|filter| crate::seccomp::Pending { filter, agent });
    let exec = setup::finalize(
        process,
        &p.caps,
        p.ns.in_user_namespace(),
        p.preserve_fds,
        seccomp,
    )?;
    Ok((exec, hook_state))
}

/// A new network namespace has `lo` down; runc brings it up.
fn bring_up_loopback() -> Result<(), SetupError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys("socket for lo"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) };
    nix::Error::result(rc).map_err(sys("ioctl(SIOCGIFFLAGS, lo)"))?;
    // SAFETY: the flags member is the one SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) };
    nix::Error::result(rc)
        .map(drop)
        .map_err(sys("ioctl(SIOCSIFFLAGS, lo up)"))
}

fn set_hostname(spec: &Spec) -> Result<(), SetupError> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(sys(format!("sethostname {h:?}")))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: the pointer and length describe the bytes of `d`.
        let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        nix::Error::result(rc).map_err(sys(format!("setdomainname {d:?}")))?;
    }
    Ok(())
}

/// Writes linux.sysctl through the container's own /proc (validated as namespaced).
fn write_sysctls(spec: &Spec) -> Result<(), SetupError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| SetupError::Sys {
            call: format!("write sysctl {key} ({path})"),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    Ok(())
}

/// With mounts in place and before pivot_root: lets the parent run the
/// prestart and createRuntime hooks, then runs createContainer here, in the
/// container's mount namespace. Returns the state JSON the hooks got.
fn run_create_hooks(spec: &Spec, chan: &Channel) -> Result<String, SetupError> {
    let h = spec.hooks().as_ref();
    let needed = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
    ];
    if !needed.iter().any(|&k| hooks::has(h, k)) {
        return Ok(String::new());
    }
    let sync_err = |e: crate::sync::SyncError| SetupError::Exec(e.to_string());
    chan.send(&Message::RunHooks).map_err(sync_err)?;
    let state = match chan.recv().map_err(sync_err)? {
        Message::HooksDone(state) => state,
        _ => return Err(SetupError::Exec("create stopped during the hooks".into())),
    };
    hooks::run(h, Kind::CreateContainer, &state).map_err(|e| SetupError::Exec(e.to_string()))?;
    Ok(state)
}

/// Blocks until `start` opens the exec fifo for reading, runs the
/// startContainer hooks, and tells `start` the outcome: `0`, or the error.
fn wait_for_start(state_dir: BorrowedFd, spec: &Spec, hook_state: &str) -> Result<(), String> {
    // The state directory fd was opened on the host before pivot_root; it is
    // close-on-exec and unreachable to other container processes because the
    // init is not dumpable.
    let fd = openat(
        state_dir.as_fd(),
        EXEC_FIFO,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open exec fifo: {e}"))?;
    let outcome = hooks::run(spec.hooks().as_ref(), Kind::StartContainer, hook_state);
    let reply = match &outcome {
        Ok(()) => "0".to_string(),
        Err(e) => format!("E{e}"),
    };
    nix::unistd::write(&fd, reply.as_bytes()).map_err(|e| format!("write exec fifo: {e}"))?;
    outcome.map_err(|e| e.to_string())
}
