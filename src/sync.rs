//! The socket between `brig create` and the processes it spawns.
//!
//! A SOCK_SEQPACKET pair keeps message boundaries, so each message is one
//! JSON document; when the other side dies, reads see end-of-file instead of
//! hanging.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Messages on the socket.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Message {
    /// The parent put stage 1 into the container's cgroup.
    Placed,
    /// Stage 1 made a user namespace: the parent must write its id maps.
    WriteIdMaps,
    /// The parent wrote the id maps.
    IdMapsWritten,
    /// Stage 1 forked the init; this is its pid in the parent's pid namespace.
    InitPid(i32),
    /// The init is set up and waits for `Go`.
    Ready,
    /// The container is recorded: the init may wait on the exec fifo.
    Go,
    /// The init's mounts are made: the parent runs the prestart and
    /// createRuntime hooks now.
    RunHooks,
    /// The parent ran its hooks; here is the state JSON for the init's own.
    HooksDone(String),
    /// Setup failed; the text is the whole error.
    Error(String),
}

/// Errors on the socket itself.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("socketpair: {0}")]
    Create(nix::Error),
    #[error("sync socket send: {0}")]
    Send(nix::Error),
    #[error("sync socket receive: {0}")]
    Recv(nix::Error),
    #[error("container init exited during setup without reporting an error")]
    Closed,
    #[error("sync socket: malformed message: {0}")]
    Malformed(serde_json::Error),
    #[error("sync socket: expected {expected}, got {got:?}")]
    Unexpected {
        expected: &'static str,
        got: Message,
    },
}

/// One end of the socket.
pub struct Channel {
    fd: OwnedFd,
}

/// Makes a connected pair: (parent end, child end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SyncError::Create)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, msg: &Message) -> Result<(), SyncError> {
        let body = serde_json::to_vec(msg).map_err(SyncError::Malformed)?;
        loop {
            match socket::send(self.fd.as_raw_fd(), &body, socket::MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(SyncError::Send(e)),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Receives one message; `Closed` when the peer is gone.
    pub fn recv(&self) -> Result<Message, SyncError> {
        // Peeking with MSG_TRUNC gives the message's length, so the buffer
        // is just that big: a fixed 64 KiB one was zeroed on every call and
        // stayed in each process's resident memory.
        let peek = socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_TRUNC;
        let len = self.recv_into(&mut [0u8; 1], peek)?;
        if len == 0 {
            return Err(SyncError::Closed);
        }
        let mut buf = vec![0u8; len];
        let n = self.recv_into(&mut buf, socket::MsgFlags::empty())?;
        serde_json::from_slice(&buf[..n]).map_err(SyncError::Malformed)
    }

    fn recv_into(&self, buf: &mut [u8], flags: socket::MsgFlags) -> Result<usize, SyncError> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(SyncError::Recv(e)),
                Ok(n) => return Ok(n),
            }
        }
    }

    /// Receives a message and requires it to be `want` (or passes on an error).
    pub fn expect(&self, want: Message, name: &'static str) -> Result<(), ChildFailed> {
        match self.recv()? {
            m if m == want => Ok(()),
            Message::Error(e) => Err(ChildFailed::Reported(e)),
            got => Err(SyncError::Unexpected {
                expected: name,
                got,
            }
            .into()),
        }
    }
}

/// A spawned process failed: it said why, or the socket broke.
#[derive(Debug, thiserror::Error)]
pub enum ChildFailed {
    #[error("{0}")]
    Reported(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_close() {
        let (a, b) = pair().unwrap();
        a.send(&Message::InitPid(42)).unwrap();
        assert_eq!(b.recv().unwrap(), Message::InitPid(42));
        b.send(&Message::Error("boom".into())).unwrap();
        assert!(matches!(
            a.expect(Message::Ready, "Ready"),
            Err(ChildFailed::Reported(e)) if e == "boom"
        ));
        drop(b);
        assert!(matches!(a.recv(), Err(SyncError::Closed)));
    }

    #[test]
    fn a_message_of_any_size_arrives_whole() {
        let (a, b) = pair().unwrap();
        let long = "x".repeat(150 * 1024);
        a.send(&Message::HooksDone(long.clone())).unwrap();
        a.send(&Message::Go).unwrap();
        assert_eq!(b.recv().unwrap(), Message::HooksDone(long));
        assert_eq!(b.recv().unwrap(), Message::Go);
    }
}
