//! brig: a low-level OCI container runtime with runc's command line.
//!
//! The library does all the work; `main.rs` and [`cli`] only parse arguments,
//! call into it and map errors to exit codes.

pub mod cgroups;
pub mod cli;
pub mod config;
pub mod error;
pub mod features;
pub mod hooks;
pub mod lifecycle;
pub mod logging;
pub mod mountinfo;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod state;
pub mod sync;
pub mod timefmt;

pub use error::Error;

/// The runtime-spec version brig implements (printed by `--version` and in `state`).
pub const OCI_VERSION: &str = "1.2.1";
