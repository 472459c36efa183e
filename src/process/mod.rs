//! The container's processes: spawning the init, setting it up, and exec.

pub mod capabilities;
pub mod console;
pub mod exec;
pub mod executable;
pub mod init;
pub mod pidfd;
pub mod rlimits;
pub mod setup;
pub mod spawn;
pub mod user;
