//! The last steps every container process takes before execve, shared by
//! the container's init and by processes `exec` adds: signals, credentials,
//! capabilities, limits, working directory, file descriptors.

use std::ffi::CString;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use oci_spec::runtime::Process;

use super::capabilities::{self, Sets};
use super::{executable, rlimits, user};
use crate::rootfs::RootfsError;
use crate::sync::{Channel, Message};

/// A setup step that failed inside the container.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
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
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

pub(crate) fn sys(call: impl Into<String>) -> impl FnOnce(nix::Error) -> SetupError {
    let call = call.into();
    move |source| SetupError::Sys { call, source }
}

/// The program to exec once started.
pub struct Exec {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Exec {
    /// Execs; if execve fails, says why over `chan` (whose close-on-exec
    /// end otherwise tells the parent the exec happened) and exits 127.
    pub fn exec_reporting(&self, chan: &crate::sync::Channel) -> ! {
        let err = nix::unistd::execve(&self.path, &self.args, &self.env).unwrap_err();
        let msg = format!("exec {:?}: {}", self.path, err.desc());
        let _ = chan.send(&crate::sync::Message::Error(msg));
        exit(127)
    }

    /// Replaces this process with the program; returns only on failure, by
    /// exiting with 127 after saying why on stderr.
    pub fn exec(&self) -> ! {
        let err = nix::unistd::execve(&self.path, &self.args, &self.env).unwrap_err();
        eprintln!("brig: exec {:?}: {}", self.path, err.desc());
        exit(127)
    }
}

/// Tells the parent how setup went and waits for its go-ahead; a failed
/// setup, or a parent that died, ends the process here.
pub fn report_and_wait<T>(chan: &Channel, setup: Result<T, SetupError>) -> T {
    let done = match setup {
        Ok(done) => done,
        Err(e) => {
            let _ = chan.send(&Message::Error(e.to_string()));
            exit(1)
        }
    };
    if chan.send(&Message::Ready).is_err() || chan.expect(Message::Go, "Go").is_err() {
        exit(1);
    }
    done
}

/// Ends a forked child at once.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing of the parent's
    // (buffers, atexit handlers) may run twice in this forked child.
    unsafe { libc::_exit(code) }
}

/// Everything from the process's credentials to its fds, in runc's order;
/// returns the program to exec.
pub fn finalize(
    process: &Process,
    caps: &Sets,
    in_userns: bool,
    preserve_fds: i32,
    seccomp: Option<crate::seccomp::Pending>,
) -> Result<Exec, SetupError> {
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    let exec = find_executable(process)?;
    enter_cwd(process)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    let mut seccomp = seccomp;
    if !no_new_privs {
        // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN: load
        // it before capabilities drop, where runc does.
        if let Some(s) = seccomp.take() {
            s.install()?;
        }
    }
    caps.limit_bounding()?;
    user::switch(process.user(), may_setgroups(in_userns))?;
    caps.apply()?;
    if no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nix::Error::result(rc).map_err(sys("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    user::set_umask(process.user());
    close_fds_on_exec(3 + preserve_fds)?;
    // With no_new_privs, last, so the fewest syscalls run under the filter
    // (as runc: the exec fifo's openat/write/close and execve still do).
    if let Some(s) = seccomp {
        s.install()?;
    }
    Ok(exec)
}

/// brig blocks signals (run forwards them) and Rust ignores SIGPIPE; the
/// container must start with a clean slate.
pub fn reset_signals() -> Result<(), SetupError> {
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

/// Non-dumpable: other processes in the container cannot open this one's
/// /proc/PID/{exe,fd,mem} while it still is a copy of brig.
pub fn set_dumpable(on: bool) -> Result<(), SetupError> {
    // SAFETY: PR_SET_DUMPABLE takes an integer flag only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
    nix::Error::result(rc)
        .map(drop)
        .map_err(sys("prctl(PR_SET_DUMPABLE)"))
}

/// Joins a new session keyring named `_ses.ID` as runc does, so that
/// containers never share the caller's keys.
pub fn join_session_keyring(id: &str) -> Result<(), SetupError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{id}"))
        .map_err(|_| SetupError::Exec("container id holds a NUL byte".into()))?;
    // SAFETY: name is a valid C string that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match nix::Error::result(rc) {
        // Kernels without keyrings, or ones that refuse them to containers.
        Err(nix::Error::ENOSYS) => Ok(()),
        other => other.map(drop).map_err(sys("keyctl(JOIN_SESSION_KEYRING)")),
    }
}

fn find_executable(process: &Process) -> Result<Exec, SetupError> {
    let args = process.args().as_deref().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    // runc sets HOME from the container's /etc/passwd when the config does not.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let arg0 = args
        .first()
        .ok_or_else(|| SetupError::Exec("process.args is empty".into()))?;
    let path = executable::find(arg0, &env).map_err(SetupError::Exec)?;
    let cstr = |s: &str, what: &str| {
        CString::new(s).map_err(|_| SetupError::Exec(format!("{what} {s:?} contains a NUL byte")))
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
fn enter_cwd(process: &Process) -> Result<(), SetupError> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(sys(format!("chdir to cwd {}", cwd.display())))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(SetupError::Sys {
            call: format!("cwd {} is outside the container's root", cwd.display()),
            source: nix::Error::ENOENT,
        }),
    }
}

/// setgroups is refused in a user namespace whose setgroups file says deny.
fn may_setgroups(in_userns: bool) -> bool {
    !in_userns
        || std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

/// Marks every fd from `first` up close-on-exec: stdio and the preserved
/// fds are all that reach the user's process.
fn close_fds_on_exec(first: i32) -> Result<(), SetupError> {
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
        .map_err(|e| SetupError::Sys {
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
