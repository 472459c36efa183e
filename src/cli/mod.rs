//! The command line: runc's flags and commands, parsed with clap and handed
//! to the library. Nothing here does container work.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Error;
use crate::lifecycle::{self, CreateOptions, ExecOptions, ListFormat, PsFormat, UpdateFlags};
use crate::logging::{self, LogFormat};
use crate::state::Store;

/// brig: an OCI container runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(name = "brig", disable_version_flag = true)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/brig")]
    pub root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not available yet).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (given before the command, as with runc).
    #[arg(long, default_value = "auto")]
    pub rootless: String,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to send the terminal's master fd to.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's host pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N fds after stdio (3 .. 3+N-1) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Unix socket to send a pidfd of the init to.
    #[arg(long = "pidfd-socket")]
    pub pidfd_socket: Option<PathBuf>,
    /// Container id.
    pub id: String,
}

impl CreateFlags {
    fn options(&self, systemd_cgroup: bool) -> CreateOptions {
        CreateOptions {
            systemd_cgroup,
            relay_terminal: false,
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            pidfd_socket: self.pidfd_socket.clone(),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for an unprivileged user (user namespace, no network namespace).
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Create a container; it waits for `start`.
    Create(CreateFlags),
    /// Run the user's process of a created container.
    Start { id: String },
    /// Create and start a container, and wait for it unless --detach.
    Run {
        #[command(flatten)]
        flags: CreateFlags,
        /// Return once the container has started.
        #[arg(short = 'd', long)]
        detach: bool,
    },
    /// Run another process in a running container.
    Exec(Box<ExecOptions>),
    /// Print what this brig supports (runtime-spec features document).
    Features,
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container.
    Kill {
        /// Signal every process of the container.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it is still running.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: PsFormat,
        id: String,
        /// Arguments for ps (after `--`), default -ef.
        #[arg(last = true)]
        ps_args: Vec<String>,
    },
    /// Print resource statistics and OOM events.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Change the resources of a running container.
    Update {
        #[command(flatten)]
        flags: Box<UpdateFlags>,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
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
    if cli.version {
        print!("{}", version_text());
        return Ok(0);
    }
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug).map_err(Error::io(format!(
        "open log file {}",
        cli.log
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display()
    )))?;
    let Some(command) = cli.command else {
        return Err(Error::Usage("no command given; see brig --help".into()));
    };
    let store = Store::new(&cli.root);
    let mut out = std::io::stdout().lock();
    match command {
        Command::Spec { bundle, rootless } => {
            write_spec(&bundle, rootless)?;
            Ok(0)
        }
        Command::Create(f) => lifecycle::create(&store, &f.options(cli.systemd_cgroup)).map(|_| 0),
        Command::Start { id } => lifecycle::start(&store, &id).map(|_| 0),
        Command::Run { flags, detach } => {
            drop(out);
            lifecycle::run(&store, &flags.options(cli.systemd_cgroup), detach)
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
