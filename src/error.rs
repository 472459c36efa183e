//! The error every command returns, with the module errors it wraps.

use crate::cgroups::CgroupError;
use crate::config::ConfigError;
use crate::namespaces::NamespaceError;
use crate::process::spawn::SpawnError;
use crate::signals::BadSignal;
use crate::state::StateError;

/// Why a command failed; the CLI prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Signal(#[from] BadSignal),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// Failures inside the container's setup, worded as runc words them.
    #[error("unable to start container process: {0}")]
    Start(SpawnError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let what = what.into();
        move |source| Error::Sys { what, source }
    }
}

impl From<SpawnError> for Error {
    fn from(e: SpawnError) -> Self {
        Error::Start(e)
    }
}
