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

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use nix::fcntl::{openat, OFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::capabilities::{self, Sets};
use super::{executable, rlimits, user};
use crate::namespaces::Plan;
use crate::rootfs::{self, RootfsError};
use crate::state::EXEC_FIFO;
use crate::sync::{Channel, Message};

/// Everything the init needs, prepared by `create` before any fork.
pub struct Prepared<'a> {
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub ns: Plan,
    pub caps: Sets,
    /// The container's state directory (its own open file, not the locked
    /// one), holding the exec fifo.
    pub state_dir: BorrowedFd<'a>,
    /// The fd of the state lock, which the spawned processes must close:
    /// flock belongs to the open file, and an init holding it while it waits
    /// for `start` would make `start` wait forever.
    pub lock_fd: std::os::fd::RawFd,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// A setup step that failed inside the container.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Caps(#[from] capabilities::CapsError),
    #[error(transparent)]
    Rlimit(#[from] rlimits::RlimitError),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("{call}: {source}")]
    Sys { call: String, source: nix::Error },
    /// runc's wording for a missing executable, which engines parse.
    #[error("{0}")]
    Exec(String),
}

fn sys(call: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let call = call.into();
    move |source| InitError::Sys { call, source }
}

/// The program to exec once started.
struct Exec {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

/// Runs the init; never returns.
pub fn run(p: &Prepared, chan: Channel) -> ! {
    let exec = match setup(p) {
        Ok(e) => e,
        Err(e) => {
            let _ = chan.send(&Message::Error(e.to_string()));
            exit(1)
        }
    };
    // Wait for create to record the container; if it died, so do we.
    if chan.send(&Message::Ready).is_err() || chan.expect(Message::Go, "Go").is_err() {
        exit(1);
    }
    drop(chan);
    if let Err(e) = wait_for_start(p.state_dir) {
        eprintln!("brig: container init: {e}");
        exit(1);
    }
    let err = nix::unistd::execve(&exec.path, &exec.args, &exec.env).unwrap_err();
    eprintln!("brig: exec {:?}: {}", exec.path, err.desc());
    exit(127)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing of the parent's
    // (buffers, atexit handlers) may run twice in this forked child.
    unsafe { libc::_exit(code) }
}

/// The whole setup, top to bottom.
fn setup(p: &Prepared) -> Result<Exec, InitError> {
    reset_signals()?;
    set_dumpable(false)?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // Device nodes and created directories get exactly the modes asked for.
    nix::sys::stat::umask(Mode::empty());
    if p.ns.creates(LinuxNamespaceType::Network) {
        bring_up_loopback()?;
    }
    let spec = p.spec;
    rootfs::prepare(&rootfs::Options {
        spec,
        rootfs: &p.rootfs,
        in_userns: p.ns.in_user_namespace(),
        cgroup_ns: p.ns.creates(LinuxNamespaceType::Cgroup),
        no_pivot: p.no_pivot,
    })?;
    set_hostname(spec)?;
    write_sysctls(spec)?;
    rootfs::finish(spec)?;
    let process = spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    if !p.no_new_keyring {
        join_session_keyring()?;
    }
    let exec = find_executable(spec)?;
    enter_cwd(spec)?;
    p.caps.limit_bounding()?;
    user::switch(process.user(), may_setgroups(&p.ns))?;
    p.caps.apply()?;
    if process.no_new_privileges().unwrap_or(false) {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nix::Error::result(rc).map_err(sys("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    user::set_umask(process.user());
    close_fds_on_exec(3 + p.preserve_fds)?;
    Ok(exec)
}

/// brig blocks signals (run forwards them) and Rust ignores SIGPIPE; the
/// container must start with a clean slate.
fn reset_signals() -> Result<(), InitError> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL runs no handler code.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys("sigprocmask"))
}

fn set_dumpable(on: bool) -> Result<(), InitError> {
    // SAFETY: PR_SET_DUMPABLE takes an integer flag only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
    nix::Error::result(rc)
        .map(drop)
        .map_err(sys("prctl(PR_SET_DUMPABLE)"))
}

/// A new network namespace has `lo` down; runc brings it up.
fn bring_up_loopback() -> Result<(), InitError> {
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

fn set_hostname(spec: &Spec) -> Result<(), InitError> {
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
fn write_sysctls(spec: &Spec) -> Result<(), InitError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| InitError::Sys {
            call: format!("write sysctl {key} ({path})"),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    Ok(())
}

fn join_session_keyring() -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a null name asks for a new anonymous session keyring.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match nix::Error::result(rc) {
        // Kernels without keyrings, or ones that refuse them to containers.
        Err(nix::Error::ENOSYS) => Ok(()),
        other => other.map(drop).map_err(sys("keyctl(JOIN_SESSION_KEYRING)")),
    }
}

fn find_executable(spec: &Spec) -> Result<Exec, InitError> {
    let process = spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    let args = process.args().as_deref().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    // runc sets HOME from the container's /etc/passwd when the config does not.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let path = executable::find(&args[0], &env).map_err(InitError::Exec)?;
    let cstr = |s: &str, what: &str| {
        CString::new(s).map_err(|_| InitError::Exec(format!("{what} {s:?} contains a NUL byte")))
    };
    Ok(Exec {
        path: cstr(&path.to_string_lossy(), "path")?,
        args: args
            .iter()
            .map(|a| cstr(a, "argument"))
            .collect::<Result<_, _>>()?,
        env: env
            .iter()
            .map(|e| cstr(e, "environment entry"))
            .collect::<Result<_, _>>()?,
    })
}

/// The home directory of `uid` in the container's /etc/passwd, or `/`.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Enters process.cwd and proves it is inside the container's root
/// (CVE-2024-21626: a leaked host directory must never be the cwd).
fn enter_cwd(spec: &Spec) -> Result<(), InitError> {
    let cwd = spec
        .process()
        .as_ref()
        .expect("validated: process is present")
        .cwd();
    nix::unistd::chdir(cwd).map_err(sys(format!("chdir to cwd {}", cwd.display())))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(InitError::Sys {
            call: format!("cwd {} is outside the container's root", cwd.display()),
            source: nix::Error::ENOENT,
        }),
    }
}

/// setgroups is refused in a user namespace whose setgroups file says deny.
fn may_setgroups(ns: &Plan) -> bool {
    !ns.in_user_namespace()
        || std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

/// Marks every fd from `first` up close-on-exec: stdio and the preserved
/// fds are all that reach the user's process.
fn close_fds_on_exec(first: i32) -> Result<(), InitError> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk the fd table.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| InitError::Sys {
            call: "read /proc/self/fd".into(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on an fd number only changes its flags; a number
        // that is no longer open just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Blocks until `start` opens the exec fifo for reading, then tells it we go.
fn wait_for_start(state_dir: BorrowedFd) -> Result<(), String> {
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
    nix::unistd::write(&fd, b"0").map_err(|e| format!("write exec fifo: {e}"))?;
    Ok(())
}
