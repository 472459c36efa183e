//! Loading a compiled filter with seccomp(2), and handing the SCMP_ACT_NOTIFY
//! listener to the seccomp agent in runc's message format.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use serde::Serialize;

use super::{Filter, SeccompError};

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// A connection to the seccomp agent, opened while listenerPath is still
/// reachable (before pivot_root), used once the filter is loaded.
pub struct Agent {
    sock: UnixStream,
    /// The init's pid as the caller of brig sees it.
    pid: i32,
}

impl Agent {
    /// An agent reached through `sock`, for a process whose pid (as the
    /// agent sees it) is `pid`.
    pub fn over(sock: UnixStream, pid: i32) -> Agent {
        Agent { sock, pid }
    }
}

/// runc's `ContainerProcessState`: what the agent receives with the fd.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a> {
    oci_version: &'a str,
    fds: [&'a str; 1],
    pid: i32,
    metadata: &'a str,
    state: State<'a>,
}

/// The runtime-spec state inside it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct State<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: &'a str,
    pid: i32,
    bundle: &'a std::path::Path,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: &'a std::collections::BTreeMap<String, String>,
}

impl Filter {
    /// Loads the filter into the calling thread; returns the notification
    /// listener when the profile uses SCMP_ACT_NOTIFY.
    ///
    /// Without no_new_privs the caller needs CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            // The kernel only reads through this pointer; Insn has the
            // layout of struct sock_filter.
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at our program, alive for the whole call; the
        // kernel copies it before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(self.flags),
                &prog as *const libc::sock_fprog,
            )
        };
        let rc = nix::Error::result(rc).map_err(SeccompError::Load)?;
        if self.listener.is_some() {
            // SAFETY: with NEW_LISTENER the return value is a new fd that
            // nothing else owns.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }))
        } else {
            Ok(None)
        }
    }

    /// Connects to the agent at listenerPath if the profile has one; call
    /// it before the container's root replaces the host's.
    pub fn connect_agent(&self) -> Result<Option<Agent>, SeccompError> {
        let Some(l) = &self.listener else {
            return Ok(None);
        };
        let sock = UnixStream::connect(&l.path).map_err(|source| SeccompError::Agent {
            path: l.path.clone(),
            what: "connect",
            source,
        })?;
        // /proc is still the caller's here, so /proc/self names our pid in
        // the caller's pid namespace, which is what the agent can use.
        let pid = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse().ok())
            .unwrap_or_else(|| std::process::id() as i32);
        Ok(Some(Agent { sock, pid }))
    }

    /// For `exec`: receives the message and listener that the exec'd
    /// process sent to brig over `from` (it cannot name its own host pid or
    /// reach listenerPath from inside the container), sets the pid to `pid`
    /// and the status to `running`, and passes both on to the agent.
    pub fn relay_listener(&self, from: &UnixStream, pid: i32) -> Result<(), SeccompError> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        let err = |what: &'static str, source: std::io::Error| SeccompError::Agent {
            path: l.path.clone(),
            what,
            source,
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            from.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| err("receive the exec'd process's listener", e.into()))?;
        let mut listener = None;
        for c in msg
            .cmsgs()
            .map_err(|e| err("read the listener message", e.into()))?
        {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these fds for us.
                listener = fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        let len = msg.bytes;
        let listener = listener.ok_or_else(|| {
            err(
                "receive the listener",
                std::io::Error::other("no fd in the message"),
            )
        })?;
        let mut state: serde_json::Value = serde_json::from_slice(&buf[..len])
            .map_err(|e| err("decode the listener message", std::io::Error::other(e)))?;
        state["pid"] = pid.into();
        state["state"]["pid"] = pid.into();
        state["state"]["status"] = "running".into();
        let body = state.to_string();
        let agent = UnixStream::connect(&l.path).map_err(|e| err("connect", e))?;
        let fds = [listener.as_raw_fd()];
        sendmsg::<UnixAddr>(
            agent.as_raw_fd(),
            &[IoSlice::new(body.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| err("send the listener", e.into()))?;
        Ok(())
    }

    /// Loads the filter and, for SCMP_ACT_NOTIFY, sends the listener to the
    /// agent (status `creating`) before anything else runs under it.
    pub fn install_and_notify(&self, agent: Option<Agent>) -> Result<(), SeccompError> {
        let listener = self.install()?;
        if let (Some(fd), Some(agent)) = (listener, agent) {
            self.send_listener(&agent, "creating", agent.pid, fd.as_fd())?;
        }
        Ok(())
    }

    /// Sends `listener` with runc's seccomp-agent message over `agent`.
    pub fn send_listener(
        &self,
        agent: &Agent,
        status: &str,
        pid: i32,
        listener: BorrowedFd,
    ) -> Result<(), SeccompError> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        let msg = ProcessState {
            oci_version: crate::OCI_VERSION,
            fds: ["seccompFd"],
            pid,
            metadata: &l.metadata,
            state: State {
                oci_version: crate::OCI_VERSION,
                id: &l.id,
                status,
                pid,
                bundle: &l.bundle,
                annotations: &l.annotations,
            },
        };
        let body = serde_json::to_vec(&msg).map_err(|e| SeccompError::Agent {
            path: l.path.clone(),
            what: "encode the container state",
            source: std::io::Error::other(e),
        })?;
        let fds = [listener.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<UnixAddr>(
            agent.sock.as_raw_fd(),
            &[IoSlice::new(&body)],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| SeccompError::Agent {
            path: l.path.clone(),
            what: "send the listener",
            source: std::io::Error::from(e),
        })?;
        Ok(())
    }
}

/// A filter on its way into a container process, with the agent connection
/// for SCMP_ACT_NOTIFY.
pub struct Pending<'a> {
    pub filter: &'a Filter,
    pub agent: Option<Agent>,
}

impl Pending<'_> {
    /// Loads the filter and hands its listener to the agent.
    pub fn install(self) -> Result<(), SeccompError> {
        self.filter.install_and_notify(self.agent)
    }
}
