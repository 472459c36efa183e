//! The `brig` binary: parse, call the library, map errors to exit codes.
//!
//! brig provides the C `main` itself. std's runtime start-up would install
//! a stack-overflow guard, which on the main thread means glibc reading and
//! parsing /proc/self/maps on every call (~5% of a `run`'s user-mode
//! instructions). What else that start-up does and brig needs is done here:
//! SIGPIPE ignored and fds 0-2 made sure to be open. Arguments still reach
//! std::env::args through glibc's init_array, as std arranges.
//!
//! A unit-test build of this file (cargo test --all-targets) keeps the test
//! harness's own main, so the entry point is left out of it.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
mod entry {
    use std::ffi::{c_char, c_int};

    /// The process's entry point, called by glibc's start-up.
    #[no_mangle]
    pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
        ignore_sigpipe();
        ensure_stdio_open();
        let cli = match brig::cli::Cli::from_env() {
            Ok(cli) => cli,
            Err(e) => {
                // Logging is not set up before the flags are read.
                eprintln!("brig: {e}");
                std::process::exit(1);
            }
        };
        match brig::cli::execute(cli) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                let msg = e.to_string();
                brig::logging::error(&msg);
                // With a log file the message went there; a person at a
                // terminal (and Docker, which reads stderr) must see it too.
                if brig::logging::has_file() {
                    eprintln!("brig: {msg}");
                }
                std::process::exit(1);
            }
        }
    }

    /// A closed pipe must make writes fail with EPIPE, not kill brig (std's
    /// start-up does the same; the container's init resets it before exec).
    fn ignore_sigpipe() {
        // SAFETY: installing SIG_IGN runs no handler code.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }

    /// A caller may start brig with fd 0, 1 or 2 closed; the first fd brig
    /// opened would then take that number and leak into the container as stdio.
    fn ensure_stdio_open() {
        for fd in 0..3 {
            // SAFETY: F_GETFD only queries the flags of an fd number.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                // SAFETY: opening /dev/null takes the lowest free fd, which is `fd`.
                unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            }
        }
    }
}
