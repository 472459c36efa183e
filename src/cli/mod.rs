//! The command line: runc's flags and commands, parsed (by `grammar`) and
//! handed to the library. Nothing here does container work.

mod grammar;

use std::io::Write;
use std::path::PathBuf;

use crate::error::Error;
use crate::lifecycle::{self, CreateOptions, ExecOptions, ListFormat, PsFormat, UpdateFlags};
use crate::logging::{self, LogFormat};
use crate::state::Store;

use grammar::Matches;

/// A parsed command line.
#[derive(Debug)]
pub struct Cli {
    /// Directory for container state.
    pub root: PathBuf,
    /// Write logs to this file instead of stderr.
    pub log: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Log debug messages too.
    pub debug: bool,
    /// Rootless mode: true, false or auto (given before the command, as with runc).
    pub rootless: String,
    pub command: Command,
}

/// The options of `create` and `run` (`--systemd-cgroup` is global: the
/// caller fills it in).
fn create_options(m: &Matches) -> Result<CreateOptions, Error> {
    Ok(CreateOptions {
        id: m.operands[0].clone(),
        bundle: PathBuf::from(m.value("bundle").unwrap_or(".")),
        pid_file: path(m, "pid-file"),
        console_socket: path(m, "console-socket"),
        no_pivot: m.is_set("no-pivot"),
        no_new_keyring: m.is_set("no-new-keyring"),
        preserve_fds: m.parsed("preserve-fds")?.unwrap_or(0),
        pidfd_socket: path(m, "pidfd-socket"),
        systemd_cgroup: m.is_set("systemd-cgroup"),
        relay_terminal: false,
    })
}

/// The commands.
#[derive(Debug)]
pub enum Command {
    /// Print this text (help) and exit successfully.
    Print(String),
    Spec {
        bundle: PathBuf,
        rootless: bool,
    },
    Create(CreateOptions),
    Start {
        id: String,
    },
    Run {
        options: CreateOptions,
        detach: bool,
    },
    Exec(Box<ExecOptions>),
    Features,
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: String,
    },
    Delete {
        force: bool,
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Ps {
        format: PsFormat,
        id: String,
        ps_args: Vec<String>,
    },
    Events {
        stats: bool,
        interval: String,
        id: String,
    },
    Update {
        flags: Box<UpdateFlags>,
        id: String,
    },
    List {
        format: ListFormat,
        quiet: bool,
    },
}

impl Cli {
    /// Parses this process's arguments.
    pub fn from_env() -> Result<Cli, Error> {
        Cli::parse(std::env::args().skip(1))
    }

    /// Parses arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, Error> {
        let m = grammar::scan(args)?;
        let command = if m.is_set("help") {
            Command::Print(grammar::help(m.command))
        } else if m.is_set("version") {
            Command::Print(version_text())
        } else {
            match m.command {
                Some(c) => command(c.name, &m)?,
                None => return Err(Error::Usage("no command given; see brig --help".into())),
            }
        };
        Ok(Cli {
            root: PathBuf::from(m.value("root").unwrap_or("/run/brig")),
            log: path(&m, "log"),
            log_format: choice(
                &m,
                "log-format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?
            .unwrap_or(LogFormat::Text),
            debug: m.is_set("debug"),
            rootless: m.value("rootless").unwrap_or("auto").to_string(),
            command,
        })
    }
}

fn path(m: &Matches, long: &str) -> Option<PathBuf> {
    m.value(long).map(PathBuf::from)
}

/// A flag whose value is one of a fixed set of words.
fn choice<T: Copy>(m: &Matches, long: &str, words: &[(&str, T)]) -> Result<Option<T>, Error> {
    let Some(v) = m.value(long) else {
        return Ok(None);
    };
    match words.iter().find(|(w, _)| *w == v) {
        Some((_, t)) => Ok(Some(*t)),
        None => {
            let known: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            Err(Error::Usage(format!(
                "invalid value {v:?} for flag --{long}: expected one of {}",
                known.join(", ")
            )))
        }
    }
}

fn command(name: &str, m: &Matches) -> Result<Command, Error> {
    let id = || m.operands[0].clone();
    let formats = [("table", ListFormat::Table), ("json", ListFormat::Json)];
    Ok(match name {
        "spec" => Command::Spec {
            bundle: PathBuf::from(m.value("bundle").unwrap_or(".")),
            rootless: m.is_set("rootless"),
        },
        "create" => Command::Create(create_options(m)?),
        "start" => Command::Start { id: id() },
        "run" => Command::Run {
            options: create_options(m)?,
            detach: m.is_set("detach"),
        },
        "exec" => Command::Exec(Box::new(exec_options(m)?)),
        "features" => Command::Features,
        "state" => Command::State { id: id() },
        "kill" => Command::Kill {
            all: m.is_set("all"),
            id: id(),
            signal: m
                .operands
                .get(1)
                .cloned()
                .unwrap_or_else(|| "SIGTERM".into()),
        },
        "delete" => Command::Delete {
            force: m.is_set("force"),
            id: id(),
        },
        "pause" => Command::Pause { id: id() },
        "resume" => Command::Resume { id: id() },
        "ps" => Command::Ps {
            format: choice(
                m,
                "format",
                &[("table", PsFormat::Table), ("json", PsFormat::Json)],
            )?
            .unwrap_or(PsFormat::Table),
            id: id(),
            ps_args: m.operands[1..].to_vec(),
        },
        "events" => Command::Events {
            stats: m.is_set("stats"),
            interval: m.value("interval").unwrap_or("5s").to_string(),
            id: id(),
        },
        "update" => Command::Update {
            flags: Box::new(update_flags(m)?),
            id: id(),
        },
        "list" => Command::List {
            format: choice(m, "format", &formats)?.unwrap_or(ListFormat::Table),
            quiet: m.is_set("quiet"),
        },
        other => return Err(Error::Usage(format!("no such command: {other:?}"))),
    })
}

fn exec_options(m: &Matches) -> Result<ExecOptions, Error> {
    let gids = m
        .values("additional-gids")
        .iter()
        .map(|g| {
            g.parse().map_err(|e| {
                Error::Usage(format!(
                    "invalid value {g:?} for flag --additional-gids: {e}"
                ))
            })
        })
        .collect::<Result<Vec<u32>, Error>>()?;
    Ok(ExecOptions {
        process: path(m, "process"),
        tty: m.is_set("tty"),
        console_socket: path(m, "console-socket"),
        detach: m.is_set("detach"),
        pid_file: path(m, "pid-file"),
        pidfd_socket: path(m, "pidfd-socket"),
        cwd: path(m, "cwd"),
        env: m.values("env"),
        user: m.value("user").map(String::from),
        additional_gids: gids,
        caps: m.values("cap"),
        no_new_privs: m.is_set("no-new-privs"),
        process_label: m.value("process-label").map(String::from),
        apparmor: m.value("apparmor").map(String::from),
        preserve_fds: m.parsed("preserve-fds")?.unwrap_or(0),
        ignore_paused: m.is_set("ignore-paused"),
        cgroup: m.value("cgroup").map(String::from),
        id: m.operands[0].clone(),
        args: m.operands[1..].to_vec(),
    })
}

fn update_flags(m: &Matches) -> Result<UpdateFlags, Error> {
    let text = |long: &str| m.value(long).map(String::from);
    Ok(UpdateFlags {
        resources: path(m, "resources"),
        memory: text("memory"),
        memory_reservation: text("memory-reservation"),
        memory_swap: text("memory-swap"),
        kernel_memory: text("kernel-memory"),
        kernel_memory_tcp: text("kernel-memory-tcp"),
        cpu_shares: m.parsed("cpu-shares")?,
        cpu_quota: m.parsed("cpu-quota")?,
        cpu_period: m.parsed("cpu-period")?,
        cpu_burst: m.parsed("cpu-burst")?,
        cpu_rt_period: m.parsed("cpu-rt-period")?,
        cpu_rt_runtime: m.parsed("cpu-rt-runtime")?,
        cpuset_cpus: text("cpuset-cpus"),
        cpuset_mems: text("cpuset-mems"),
        pids_limit: m.parsed("pids-limit")?,
        blkio_weight: m.parsed("blkio-weight")?,
    })
}

/// The three lines dockerd parses from `runc --version`.
pub fn version_text() -> String {
    format!(
        "brig version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("BRIG_GIT_COMMIT"),
        crate::OCI_VERSION
    )
}

/// Runs a parsed command line; returns the process exit code.
pub fn execute(cli: Cli) -> Result<i32, Error> {
    if let Command::Print(text) = &cli.command {
        print!("{text}");
        return Ok(0);
    }
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug).map_err(Error::io(format!(
        "open log file {}",
        cli.log
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display()
    )))?;
    let command = cli.command;
    let store = Store::new(&cli.root);
    let mut out = std::io::stdout().lock();
    match command {
        Command::Print(_) => Ok(0),
        Command::Spec { bundle, rootless } => {
            write_spec(&bundle, rootless)?;
            Ok(0)
        }
        Command::Create(o) => lifecycle::create(&store, &o).map(|_| 0),
        Command::Start { id } => lifecycle::start(&store, &id).map(|_| 0),
        Command::Run { options, detach } => {
            drop(out);
            lifecycle::run(&store, &options, detach)
        }
        Command::Exec(o) => {
            drop(out);
            lifecycle::exec(&store, &o)
        }
        Command::Features => {
            let doc = crate::features::document();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
            .map_err(Error::io("write features"))?;
            Ok(0)
        }
        Command::State { id } => lifecycle::state(&store, &id, &mut out).map(|_| 0),
        Command::Kill { all, id, signal } => lifecycle::kill(&store, &id, &signal, all).map(|_| 0),
        Command::Delete { force, id } => lifecycle::delete(&store, &id, force).map(|_| 0),
        Command::Pause { id } => lifecycle::pause(&store, &id).map(|_| 0),
        Command::Resume { id } => lifecycle::resume(&store, &id).map(|_| 0),
        Command::Ps {
            format,
            id,
            ps_args,
        } => lifecycle::ps(&store, &id, format, &ps_args, &mut out).map(|_| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let interval = lifecycle::events::parse_interval(&interval)?;
            lifecycle::events(&store, &id, stats, interval, &mut out).map(|_| 0)
        }
        Command::Update { flags, id } => lifecycle::update(&store, &id, &flags).map(|_| 0),
        Command::List { format, quiet } => {
            lifecycle::list(&store, format, quiet, &mut out).map(|_| 0)
        }
    }
    .inspect(|_| {
        let _ = std::io::stdout().flush();
    })
}

fn write_spec(bundle: &std::path::Path, rootless: bool) -> Result<(), Error> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::Usage(format!(
            "File {} exists. Remove it first",
            path.display()
        )));
    }
    let spec = crate::config::default_spec(rootless);
    let text = serde_json::to_string_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(Error::io(format!("write {}", path.display())))
}
