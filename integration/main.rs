//! End-to-end tests of brig: real containers from a busybox rootfs, asserting
//! what the process inside sees. They need root and Debian's busybox-static
//! (`/bin/busybox`). Run with `cargo test --test integration`.

mod harness;

mod cgroups;
mod cli;
mod devices;
mod engine_configs;
mod errors;
mod exec;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;
mod seccomp;
mod security;
