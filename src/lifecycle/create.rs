//! `create`: validate the bundle, claim the id, spawn the init and record
//! the container once the init is set up and waiting for `start`.

use std::borrow::Cow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::cgroups::{self, Cgroup};
use crate::config;
use crate::error::Error;
use crate::hooks::{self, Kind};
use crate::namespaces::Plan;
use crate::process::capabilities::Sets;
use crate::process::init::Prepared;
use crate::process::spawn::{self, Child, Spawned};
use crate::process::{console, init};
use crate::rootfs;
use crate::state::{self, Container, Saved, StateError, Store, EXEC_FIFO};
use crate::timefmt;

/// Flags of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `--pidfd-socket`: where to send a pidfd of the init.
    pub pidfd_socket: Option<PathBuf>,
    /// `--systemd-cgroup`: manage the cgroup through systemd.
    pub systemd_cgroup: bool,
    /// Without a console socket, hand a terminal's master back to the
    /// caller, which relays it (a foreground `run`).
    pub relay_terminal: bool,
}

/// What `create` made.
pub struct Created {
    /// The init's host pid.
    pub pid: i32,
    /// The terminal's master, when the caller relays it.
    pub pty: Option<OwnedFd>,
}

/// The socket the container's pty master goes over.
pub enum ConsoleSocket {
    /// The engine's `--console-socket`, connected: the master goes to it.
    Engine(UnixStream),
    /// A pair whose other end brig keeps, to relay the terminal itself.
    Relay {
        ours: UnixStream,
        theirs: UnixStream,
    },
}

impl ConsoleSocket {
    /// Connects what `terminal` and the flags ask for, or says why not.
    pub fn for_process(
        terminal: bool,
        socket: Option<&Path>,
        relay: bool,
    ) -> Result<Option<ConsoleSocket>, Error> {
        match (terminal, socket) {
            (true, Some(path)) => UnixStream::connect(path)
                .map(|s| Some(ConsoleSocket::Engine(s)))
                .map_err(Error::io(format!(
                    "connect to console socket {}",
                    path.display()
                ))),
            (true, None) if relay => {
                let (ours, theirs) =
                    UnixStream::pair().map_err(Error::io("socketpair for the terminal"))?;
                Ok(Some(ConsoleSocket::Relay { ours, theirs }))
            }
            (true, None) => Err(Error::Usage(
                "cannot allocate tty if brig will detach without setting console socket".into(),
            )),
            (false, Some(_)) => Err(Error::Usage(
                "cannot use console socket if brig will not allocate tty".into(),
            )),
            (false, None) => Ok(None),
        }
    }

    /// The end the container process sends the master over.
    pub fn child_fd(&self) -> RawFd {
        match self {
            ConsoleSocket::Engine(s) => s.as_raw_fd(),
            ConsoleSocket::Relay { theirs, .. } => theirs.as_raw_fd(),
        }
    }

    /// The master, once the process has sent it (relay only).
    pub fn take_master(self) -> Result<Option<OwnedFd>, Error> {
        match self {
            ConsoleSocket::Engine(_) => Ok(None),
            ConsoleSocket::Relay { ours, theirs } => {
                drop(theirs);
                console::recv_fd(ours.as_raw_fd())
                    .map(Some)
                    .map_err(Error::sys("receive the terminal's master"))
            }
        }
    }
}

/// A bundle that passed every check that needs no process.
struct Bundle {
    dir: PathBuf,
    spec: Spec,
    /// config.json's text while it still is exactly `spec`.
    json: Option<Vec<u8>>,
    rootfs: PathBuf,
    /// linux.seccomp, compiled before any fork so a bad profile fails early.
    seccomp: Option<crate::seccomp::Filter>,
}

/// Creates the container.
pub fn create(store: &Store, o: &CreateOptions) -> Result<Created, Error> {
    state::validate_id(&o.id)?;
    if o.systemd_cgroup {
        return Err(Error::Usage(
            "--systemd-cgroup: the systemd cgroup driver is not available in brig yet".into(),
        ));
    }
    let mut bundle = validate_bundle(o)?;
    let listen_fds = socket_activation();
    if listen_fds > 0 {
        if let Some(p) = bundle.spec.process_mut() {
            add_listen_env(p, listen_fds);
            bundle.json = None;
        }
    }
    let ns = Plan::from_spec(&bundle.spec)?;
    let caps = Sets::from_spec(
        bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref()),
    );
    let claim = store.create(&o.id)?;
    let cgroup = create_cgroup(&o.id, &bundle.spec)?;
    let container = record_creating(&claim.dir, o, &bundle)?;
    make_exec_fifo(&claim.dir)?;
    // Relative mount sources are taken from the bundle, as runc does.
    std::env::set_current_dir(&bundle.dir).map_err(Error::io(format!(
        "chdir to bundle {}",
        bundle.dir.display()
    )))?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let console =
        ConsoleSocket::for_process(terminal, o.console_socket.as_deref(), o.relay_terminal)?;
    let state_dir = open_state_dir(&claim.dir)?;
    let prepared = Prepared {
        id: &o.id,
        spec: &bundle.spec,
        rootfs: bundle.rootfs.clone(),
        ns,
        caps,
        state_dir: state_dir.as_fd(),
        preserve_fds: (listen_fds + o.preserve_fds) as i32,
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        console: console.as_ref().map(ConsoleSocket::child_fd),
        seccomp: bundle.seccomp.as_ref(),
    };
    let run_init = |chan| -> std::convert::Infallible { init::run(&prepared, chan) };
    let child = Child {
        ns: &prepared.ns,
        close_fds: &[claim.dir_file().as_raw_fd()],
        run: &run_init,
    };
    let init = spawn::spawn_in(&child, cgroup.as_ref().map(|g| &g.cgroup))?;
    match finish_create(
        &init,
        container,
        &bundle.spec,
        cgroup.as_ref().map(|g| &g.cgroup),
        o,
    ) {
        Ok(()) => {
            let pid = init.pid.as_raw();
            let pty = match console {
                Some(c) => c.take_master(),
                None => Ok(None),
            };
            let pty = match pty {
                Ok(p) => p,
                Err(e) => {
                    init.abort();
                    return Err(e);
                }
            };
            init.release()?;
            claim.commit();
            if let Some(g) = cgroup {
                g.keep();
            }
            Ok(Created { pid, pty })
        }
        Err(e) => {
            init.abort();
            Err(e)
        }
    }
}

/// Checks config.json, the rootfs and the flags against each other.
fn validate_bundle(o: &CreateOptions) -> Result<Bundle, Error> {
    let dir = std::fs::canonicalize(&o.bundle)
        .map_err(Error::io(format!("bundle {}", o.bundle.display())))?;
    let config::Config { spec, json } = config::load(&dir.join("config.json"))?;
    let rootfs = rootfs::rootfs_path(&dir, &spec);
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Usage(format!(
                "rootfs ({}) is not a directory",
                rootfs.display()
            )))
        }
        Err(e) => {
            return Err(Error::Io {
                what: format!("rootfs ({})", rootfs.display()),
                source: e,
            })
        }
    }
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(Error::io(format!("rootfs ({})", rootfs.display())))?;
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => {
            let mut f = crate::seccomp::compile(s)?;
            let annotations = spec.annotations().clone().unwrap_or_default();
            f.set_container(&o.id, &dir, annotations.into_iter().collect());
            Some(f)
        }
        None => None,
    };
    Ok(Bundle {
        dir,
        spec,
        json,
        rootfs,
        seccomp,
    })
}

/// A container cgroup made by this create; removed again unless kept.
struct CgroupGuard {
    cgroup: Cgroup,
    keep: bool,
}

impl CgroupGuard {
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = self.cgroup.destroy() {
                crate::logging::warn(&format!("removing the cgroup of a failed create: {e}"));
            }
        }
    }
}

/// Makes the container's cgroup; without root there is none to make.
fn create_cgroup(id: &str, spec: &Spec) -> Result<Option<CgroupGuard>, Error> {
    if !nix::unistd::geteuid().is_root() {
        crate::logging::warn("not running as root: the container gets no cgroup of its own");
        return Ok(None);
    }
    let cgroup = Cgroup::open(&cgroup_path(id, spec)?)?;
    let guard = CgroupGuard {
        cgroup,
        keep: false,
    };
    guard.cgroup.create()?;
    Ok(Some(guard))
}

/// The container's cgroup path (see `cgroups::container_path`).
fn cgroup_path(id: &str, spec: &Spec) -> Result<PathBuf, Error> {
    let p = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref());
    Ok(cgroups::container_path(p, id)?)
}

/// Writes the first state.json (no pid yet: `state` says creating), and
/// beside it the spec, copied when config.json is exactly what was parsed.
fn record_creating(dir: &Path, o: &CreateOptions, b: &Bundle) -> Result<Container, Error> {
    let annotations = b
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut c = Container {
        dir: dir.to_path_buf(),
        saved: Saved {
            id: o.id.clone(),
            pid: 0,
            init_start_time: 0,
            bundle: b.dir.clone(),
            rootfs: b.rootfs.clone(),
            created: timefmt::rfc3339_nanos(SystemTime::now()),
            owner: String::new(),
            annotations,
            cgroup_path: None,
            own_pid_namespace: false,
            hooks: None,
            no_new_keyring: o.no_new_keyring,
        },
    };
    c.saved.facts_from(&b.spec);
    let json = match &b.json {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(
            serde_json::to_vec(&b.spec).map_err(|source| StateError::Corrupt {
                path: dir.join(state::CONFIG_FILE),
                source,
            })?,
        ),
    };
    c.save_spec(&json)?;
    c.save()?;
    Ok(c)
}

fn make_exec_fifo(dir: &Path) -> Result<(), Error> {
    let path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o622))
        .map_err(Error::sys(format!("mkfifo {}", path.display())))?;
    // mkfifo applies the umask; the init may run as any user.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &path,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(Error::sys(format!("chmod {}", path.display())))
}

fn open_state_dir(dir: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys(format!("open {}", dir.display())))
}

/// Host-side steps once the init exists: oom score, wait for setup,
/// resources (after setup, as runc: device rules would stop the init's
/// mknod), record.
fn finish_create(
    init: &Spawned,
    mut c: Container,
    spec: &Spec,
    cgroup: Option<&Cgroup>,
    o: &CreateOptions,
) -> Result<(), Error> {
    let pid = init.pid.as_raw();
    if let Some(score) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
            .map_err(Error::io(format!("set process.oomScoreAdj to {score}")))?;
    }
    let run_hooks = || -> Result<String, String> {
        let mut state = c.oci_state();
        state["pid"] = pid.into();
        state["status"] = "creating".into();
        let state = state.to_string();
        let h = spec.hooks().as_ref();
        hooks::run(h, Kind::Prestart, &state).map_err(|e| e.to_string())?;
        hooks::run(h, Kind::CreateRuntime, &state).map_err(|e| e.to_string())?;
        Ok(state)
    };
    init.wait_ready_serving_hooks(&run_hooks)?;
    if let (Some(cg), Some(r)) = (
        cgroup,
        spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
    ) {
        let mut r = r.clone();
        r.set_devices(cgroups::device_rules(spec));
        cg.apply(&r)?;
    }
    c.saved.pid = pid;
    c.saved.init_start_time = state::process_start_time(pid)
        .ok_or_else(|| Error::Usage(format!("container init {pid} exited during create")))?;
    c.save()?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    if let Some(s) = &o.pidfd_socket {
        crate::process::pidfd::send(s, pid).map_err(Error::Usage)?;
    }
    Ok(())
}

/// Socket activation: the number of fds from 3 up that systemd passed to
/// brig (LISTEN_FDS, for this pid); runc passes them on to the container.
pub fn socket_activation() -> u32 {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if for_us {
        n
    } else {
        0
    }
}

/// Tells the process about its activation fds, as runc does (LISTEN_PID=1).
pub fn add_listen_env(p: &mut oci_spec::runtime::Process, n: u32) {
    let mut env = p.env().clone().unwrap_or_default();
    env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
    env.push(format!("LISTEN_FDS={n}"));
    env.push("LISTEN_PID=1".into());
    p.set_env(Some(env));
}

/// Writes the pid file atomically (temp file + rename in the same directory).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let path =
        std::path::absolute(path).map_err(Error::io(format!("pid file {}", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.brig-tmp"));
    state::write_atomic(&tmp, &path, pid.to_string().as_bytes()).map_err(Error::from)
}
