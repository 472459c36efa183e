//! The `brig` binary: parse, call the library, map errors to exit codes.

fn main() {
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
