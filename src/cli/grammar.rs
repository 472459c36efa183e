//! runc's command-line grammar: the flag tables, the argv scan and the help
//! text made from the same tables.
//!
//! Hand-written rather than clap: every command brig runs pays for parsing,
//! and clap built the whole command tree on each call (about a quarter of
//! a `brig state`'s user time and ~250 KB of allocations, measured with
//! perf and valgrind). The grammar follows runc's Go flag rules: `--flag
//! value`, `--flag=value`, single-dash long names (`-root`), `--bool=false`,
//! and flag parsing stops at `--` or, for commands taking a trailing
//! command line (exec, ps), at the container id.

use crate::error::Error;

/// One flag of a command (or a global one).
#[derive(Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's name in help; `None` for a boolean flag.
    pub value: Option<&'static str>,
    pub help: &'static str,
}

const fn switch(long: &'static str, short: Option<char>, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        value: None,
        help,
    }
}

const fn valued(
    long: &'static str,
    short: Option<char>,
    value: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        short,
        value: Some(value),
        help,
    }
}

/// A command: its flags and what follows them.
#[derive(Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    pub about: &'static str,
    /// The positional part of the usage line.
    pub operands: &'static str,
    /// Smallest and largest number of operands (before any verbatim tail).
    pub min: usize,
    pub max: usize,
    /// After this many operands the rest is taken verbatim (exec's command, ps's arguments).
    pub verbatim_after: Option<usize>,
    /// The command's flags, in groups (`run` is `create`'s and one more).
    pub flags: &'static [&'static [Flag]],
}

/// Flags accepted before the command and after it.
#[rustfmt::skip]
pub const GLOBAL: &[Flag] = &[
    valued("root", None, "DIR", "directory for container state (default /run/brig)"),
    valued("log", None, "FILE", "write logs to FILE instead of stderr"),
    valued("log-format", None, "text|json", "log line format (default text)"),
    switch("debug", None, "log debug messages too"),
    switch("systemd-cgroup", None, "use systemd to manage cgroups (refused: not available)"),
    valued("rootless", None, "true|false|auto", "rootless mode (default auto)"),
    switch("version", Some('v'), "print the version"),
    switch("help", Some('h'), "print help"),
];

#[rustfmt::skip]
const CREATE_FLAGS: &[Flag] = &[
    valued("bundle", Some('b'), "DIR", "bundle directory holding config.json (default .)"),
    valued("console-socket", None, "PATH", "unix socket to send the terminal's master fd to"),
    valued("pid-file", None, "FILE", "write the init's host pid to FILE"),
    switch("no-pivot", None, "chroot instead of pivot_root"),
    switch("no-new-keyring", None, "keep the caller's session keyring"),
    valued("preserve-fds", None, "N", "pass N fds after stdio (3 .. 3+N-1) to the container"),
    valued("pidfd-socket", None, "PATH", "unix socket to send a pidfd of the init to"),
];

#[rustfmt::skip]
const EXEC_FLAGS: &[Flag] = &[
    valued("process", Some('p'), "FILE", "a JSON process object to run (other process flags are ignored)"),
    switch("tty", Some('t'), "allocate a terminal"),
    valued("console-socket", None, "PATH", "unix socket to send the terminal's master fd to"),
    switch("detach", Some('d'), "return once the process has started"),
    valued("pid-file", None, "FILE", "write the process's host pid to FILE"),
    valued("pidfd-socket", None, "PATH", "unix socket to send a pidfd of the process to"),
    valued("cwd", None, "DIR", "working directory inside the container"),
    valued("env", Some('e'), "KEY=VALUE", "an extra environment variable (repeatable)"),
    valued("user", Some('u'), "UID[:GID]", "user and group, as numbers"),
    valued("additional-gids", Some('g'), "GID", "an additional group (repeatable)"),
    valued("cap", Some('c'), "CAP", "a capability to add (repeatable)"),
    switch("no-new-privs", None, "set no_new_privs"),
    valued("process-label", None, "LABEL", "SELinux label (accepted, not applied)"),
    valued("apparmor", None, "PROFILE", "AppArmor profile (accepted, not applied)"),
    valued("preserve-fds", None, "N", "pass N fds after stdio to the process"),
    switch("ignore-paused", None, "exec even into a paused container"),
    valued("cgroup", None, "PATH", "a sub-cgroup of the container's to run in"),
];

#[rustfmt::skip]
const UPDATE_FLAGS: &[Flag] = &[
    valued("resources", Some('r'), "FILE", "LinuxResources JSON from FILE, or - for stdin"),
    valued("memory", None, "SIZE", "memory limit (bytes or k/m/g; -1 for none)"),
    valued("memory-reservation", None, "SIZE", "memory soft limit"),
    valued("memory-swap", None, "SIZE", "memory plus swap limit"),
    valued("kernel-memory", None, "SIZE", "kernel memory limit"),
    valued("kernel-memory-tcp", None, "SIZE", "kernel TCP buffer limit"),
    valued("cpu-shares", None, "N", "CPU shares"),
    valued("cpu-quota", None, "N", "CPU CFS quota (us)"),
    valued("cpu-period", None, "N", "CPU CFS period (us)"),
    valued("cpu-burst", None, "N", "CPU CFS burst (us)"),
    valued("cpu-rt-period", None, "N", "CPU realtime period (us)"),
    valued("cpu-rt-runtime", None, "N", "CPU realtime runtime (us)"),
    valued("cpuset-cpus", None, "LIST", "CPUs to use"),
    valued("cpuset-mems", None, "LIST", "memory nodes to use"),
    valued("pids-limit", None, "N", "maximum number of pids"),
    valued("blkio-weight", None, "N", "block IO weight (10..1000)"),
];

/// As a largest operand count: the operands after the first are taken
/// verbatim (exec's command, ps's arguments).
const TAIL: usize = usize::MAX;

const fn cmd(
    name: &'static str,
    about: &'static str,
    operands: &'static str,
    (min, max): (usize, usize),
    flags: &'static [&'static [Flag]],
) -> CommandSpec {
    CommandSpec {
        name,
        about,
        operands,
        min,
        max,
        verbatim_after: if max == TAIL { Some(1) } else { None },
        flags,
    }
}

/// Every command, in the order help lists them.
#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    cmd("spec", "write a default config.json into the bundle", "", (0, 0), &[&[
        valued("bundle", Some('b'), "DIR", "bundle directory (default .)"),
        switch("rootless", None, "a spec for an unprivileged user"),
    ]]),
    cmd("create", "create a container; it waits for start", "<container-id>", (1, 1), &[CREATE_FLAGS]),
    cmd("start", "run the user's process of a created container", "<container-id>", (1, 1), &[]),
    cmd("run", "create and start a container, and wait for it unless --detach", "<container-id>", (1, 1), &[
        CREATE_FLAGS,
        &[switch("detach", Some('d'), "return once the container has started")],
    ]),
    cmd("exec", "run another process in a running container", "<container-id> <command> [args...]",
        (1, TAIL), &[EXEC_FLAGS]),
    cmd("features", "print what this brig supports (JSON)", "", (0, 0), &[]),
    cmd("state", "print the state of a container as JSON", "<container-id>", (1, 1), &[]),
    cmd("kill", "send a signal (default SIGTERM) to a container", "<container-id> [signal]", (1, 2), &[&[
        switch("all", Some('a'), "signal every process of the container"),
    ]]),
    cmd("delete", "delete a container", "<container-id>", (1, 1), &[&[
        switch("force", Some('f'), "kill it first if it is still running"),
    ]]),
    cmd("pause", "freeze every process of a container", "<container-id>", (1, 1), &[]),
    cmd("resume", "thaw a paused container", "<container-id>", (1, 1), &[]),
    cmd("ps", "list the processes of a container", "<container-id> [ps args...]", (1, TAIL), &[&[
        valued("format", Some('f'), "table|json", "output format (default table)"),
    ]]),
    cmd("events", "print resource statistics and OOM events", "<container-id>", (1, 1), &[&[
        switch("stats", None, "print one stats event and exit"),
        valued("interval", None, "DURATION", "time between stats events (default 5s)"),
    ]]),
    cmd("update", "change the resources of a running container", "<container-id>", (1, 1), &[UPDATE_FLAGS]),
    cmd("list", "list containers", "", (0, 0), &[&[
        valued("format", Some('f'), "table|json", "output format (default table)"),
        switch("quiet", Some('q'), "print only ids"),
    ]]),
];

/// What the scan of one command line found.
#[derive(Debug, Default)]
pub struct Matches {
    /// The command's name; `None` when only global flags were given.
    pub command: Option<&'static CommandSpec>,
    /// Flags in order, by long name; booleans carry "true" or "false".
    flags: Vec<(&'static str, String)>,
    /// Operands after the command name (a verbatim tail included).
    pub operands: Vec<String>,
}

impl Matches {
    /// The last value given for a flag.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for a repeatable flag, in order.
    pub fn values(&self, long: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(l, _)| *l == long)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a boolean flag is set (its last `--flag[=bool]` wins).
    pub fn is_set(&self, long: &str) -> bool {
        self.value(long) == Some("true")
    }

    /// A flag's value parsed as a number (or any `FromStr`), if given.
    pub fn parsed<T: std::str::FromStr>(&self, long: &str) -> Result<Option<T>, Error>
    where
        T::Err: std::fmt::Display,
    {
        self.value(long)
            .map(|v| {
                v.parse().map_err(|e| {
                    Error::Usage(format!("invalid value {v:?} for flag --{long}: {e}"))
                })
            })
            .transpose()
    }
}

/// Scans `args` (without the program name) against the global table and the
/// command's own.
pub fn scan<I: IntoIterator<Item = String>>(args: I) -> Result<Matches, Error> {
    let mut m = Matches::default();
    let mut it = args.into_iter();
    let mut verbatim = false;
    while let Some(arg) = it.next() {
        let taken = m.operands.len();
        if let Some(cmd) = m.command {
            if !verbatim && cmd.verbatim_after == Some(taken) && taken > 0 {
                verbatim = true;
                if arg == "--" {
                    continue;
                }
            }
        }
        if verbatim {
            m.operands.push(arg);
            continue;
        }
        if arg == "--" {
            verbatim = true;
            continue;
        }
        let Some(body) = flag_body(&arg) else {
            match m.command {
                Some(_) => m.operands.push(arg),
                None => m.command = Some(find_command(&arg)?),
            }
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = lookup(m.command, name).ok_or_else(|| {
            let hint = m.command.map_or(String::new(), |c| format!(" {}", c.name));
            Error::Usage(format!(
                "flag provided but not defined: {arg}; see brig{hint} --help"
            ))
        })?;
        let value = match (flag.value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => match v.as_str() {
                "true" | "1" => "true".to_string(),
                "false" | "0" => "false".to_string(),
                _ => {
                    return Err(Error::Usage(format!(
                        "invalid boolean value {v:?} for flag --{}",
                        flag.long
                    )))
                }
            },
            (Some(_), Some(v)) => v,
            (Some(_), None) => it
                .next()
                .ok_or_else(|| Error::Usage(format!("flag needs an argument: --{}", flag.long)))?,
        };
        m.flags.push((flag.long, value));
    }
    if m.is_set("help") || m.is_set("version") {
        return Ok(m);
    }
    if let Some(cmd) = m.command {
        let n = m.operands.len();
        let wanted = cmd.verbatim_after.map_or(n, |v| n.min(v));
        if n < cmd.min || wanted > cmd.max {
            let count = if cmd.min == cmd.max {
                format!("exactly {}", cmd.min)
            } else if cmd.max == usize::MAX {
                format!("at least {}", cmd.min)
            } else {
                format!("{} to {}", cmd.min, cmd.max)
            };
            return Err(Error::Usage(format!(
                "{:?} requires {count} argument(s): brig {} [flags] {}",
                cmd.name, cmd.name, cmd.operands
            )));
        }
    }
    Ok(m)
}

/// The flag name of `arg` without its dashes, or `None` for an operand.
/// Go's flag package takes `-name` and `--name` alike.
fn flag_body(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    (!body.is_empty() && !body.starts_with('-')).then_some(body)
}

fn find_command(name: &str) -> Result<&'static CommandSpec, Error> {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::Usage(format!("no such command: {name:?}; see brig --help")))
}

/// The command's own flags come first: `spec --rootless` is a switch, the
/// global `--rootless` takes a value.
fn lookup(cmd: Option<&'static CommandSpec>, name: &str) -> Option<&'static Flag> {
    let own = cmd.map_or(&[][..], |c| c.flags);
    let matches =
        |f: &&Flag| f.long == name || (name.chars().count() == 1 && f.short == name.chars().next());
    own.iter()
        .flat_map(|group| group.iter())
        .find(matches)
        .or_else(|| GLOBAL.iter().find(matches))
}

/// Help for the whole program, or for one command.
pub fn help(cmd: Option<&CommandSpec>) -> String {
    let mut s = String::new();
    match cmd {
        None => {
            s.push_str("brig: an OCI container runtime with runc's command line\n\n");
            s.push_str("Usage: brig [global flags] <command> [flags] [operands]\n\nCommands:\n");
            for c in COMMANDS {
                s.push_str(&format!("  {:<10} {}\n", c.name, c.about));
            }
            s.push_str("\nGlobal flags:\n");
            flag_lines(&mut s, GLOBAL);
        }
        Some(c) => {
            s.push_str(&format!("brig {}: {}\n\n", c.name, c.about));
            s.push_str(&format!("Usage: brig {} [flags] {}\n", c.name, c.operands));
            if !c.flags.is_empty() {
                s.push_str("\nFlags:\n");
                for group in c.flags {
                    flag_lines(&mut s, group);
                }
            }
            s.push_str("\nGlobal flags (see brig --help) are accepted too.\n");
        }
    }
    s
}

fn flag_lines(s: &mut String, flags: &[Flag]) {
    for f in flags {
        let short = f.short.map_or("    ".to_string(), |c| format!("-{c}, "));
        let name = match f.value {
            Some(v) => format!("--{} {v}", f.long),
            None => format!("--{}", f.long),
        };
        s.push_str(&format!("  {short}{name:<32} {}\n", f.help));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_str(line: &str) -> Result<Matches, Error> {
        scan(line.split_whitespace().map(String::from))
    }

    #[test]
    fn values_take_both_spellings_and_go_single_dash_names() {
        let m = scan_str("--root /r -log=/l create -b /b --pid-file=/p c1").unwrap();
        assert_eq!(m.command.unwrap().name, "create");
        assert_eq!(m.value("root"), Some("/r"));
        assert_eq!(m.value("log"), Some("/l"));
        assert_eq!(m.value("bundle"), Some("/b"));
        assert_eq!(m.value("pid-file"), Some("/p"));
        assert_eq!(m.operands, ["c1"]);
    }

    #[test]
    fn the_commands_own_flag_wins_over_a_global_of_the_same_name() {
        let m = scan_str("--rootless false spec --rootless").unwrap();
        assert!(m.is_set("rootless"));
        let m = scan_str("--rootless false list").unwrap();
        assert_eq!(m.value("rootless"), Some("false"));
    }

    #[test]
    fn booleans_accept_an_explicit_value() {
        let m = scan_str("run --detach=false -d=true x").unwrap();
        assert!(m.is_set("detach"));
        let m = scan_str("run -d --detach=false x").unwrap();
        assert!(!m.is_set("detach"));
        assert!(scan_str("run --detach=maybe x").is_err());
    }

    #[test]
    fn exec_takes_its_command_verbatim_after_the_id() {
        let m = scan_str("exec -t --env A=1 -e B=2 c1 sh -c --tty").unwrap();
        assert!(m.is_set("tty"));
        assert_eq!(m.values("env"), ["A=1", "B=2"]);
        assert_eq!(m.operands, ["c1", "sh", "-c", "--tty"]);
        let m = scan_str("exec c1 -- ls -l").unwrap();
        assert_eq!(m.operands, ["c1", "ls", "-l"]);
    }

    #[test]
    fn negative_numbers_are_values() {
        let m = scan_str("update --memory -1 --cpu-quota -1 c1").unwrap();
        assert_eq!(m.value("memory"), Some("-1"));
        assert_eq!(m.parsed::<i64>("cpu-quota").unwrap(), Some(-1));
        assert!(m.parsed::<u64>("memory").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let e = scan_str("create --bogus c1").unwrap_err().to_string();
        assert!(
            e.contains("--bogus") && e.contains("brig create --help"),
            "{e}"
        );
        let e = scan_str("start").unwrap_err().to_string();
        assert!(
            e.contains("\"start\" requires exactly 1 argument(s)"),
            "{e}"
        );
        let e = scan_str("delete a b").unwrap_err().to_string();
        assert!(e.contains("exactly 1"), "{e}");
        let e = scan_str("create --bundle").unwrap_err().to_string();
        assert!(e.contains("flag needs an argument: --bundle"), "{e}");
        let e = scan_str("frobnicate").unwrap_err().to_string();
        assert!(e.contains("no such command"), "{e}");
    }

    #[test]
    fn help_lists_every_command_and_flag() {
        let top = help(None);
        for c in COMMANDS {
            assert!(top.contains(c.name), "{top}");
            let own = help(Some(c));
            for f in c.flags.iter().flat_map(|g| g.iter()) {
                assert!(own.contains(&format!("--{}", f.long)), "{own}");
            }
        }
    }
}
