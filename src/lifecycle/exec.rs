//! `exec`: run another process in a running container.

use std::path::PathBuf;

use oci_spec::runtime::{Capability, Process};

use super::create::ConsoleSocket;
use super::wait::{forwarded_signals, wait_for};
use crate::config::ConfigError;
use crate::error::Error;
use crate::logging;
use crate::namespaces::Plan;
use crate::process::capabilities::Sets;
use crate::process::exec::{self, Prepared};
use crate::process::spawn::{self, Child};
use crate::state::{Status, Store};

/// runc's `exec` flags.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    /// A JSON `process` object to run (other process flags are then ignored).
    pub process: Option<PathBuf>,
    /// Allocate a terminal.
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send a pidfd of the process to.
    pub pidfd_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE), repeatable.
    pub env: Vec<String>,
    /// UID[:GID], numbers only.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    /// Capabilities to add (bounding, effective, permitted).
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub process_label: Option<String>,
    pub apparmor: Option<String>,
    pub preserve_fds: u32,
    /// Exec even into a paused container.
    pub ignore_paused: bool,
    /// A sub-cgroup of the container's to run in.
    pub cgroup: Option<String>,
    pub id: String,
    /// The command and its arguments.
    pub args: Vec<String>,
}

/// Parses `UID[:GID]` strictly: numbers only, nothing left over.
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>), Error> {
    let bad = || Error::Usage(format!("--user {s:?}: expected UID or UID:GID as numbers"));
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let num = |v: &str| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            Err(bad())
        } else {
            v.parse::<u32>().map_err(|_| bad())
        }
    };
    Ok((num(uid)?, gid.map(num).transpose()?))
}

/// The process to run: the `--process` file, or the container's process
/// with the flags applied.
fn build_process(base: Option<&Process>, o: &ExecOptions) -> Result<Process, Error> {
    if let Some(path) = &o.process {
        let bytes =
            std::fs::read(path).map_err(Error::io(format!("read process {}", path.display())))?;
        let process: Process = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| Error::Usage(format!("{}: malformed JSON: {e}", path.display())))
            .and_then(|v| {
                serde_path_to_error::deserialize(v).map_err(|e| {
                    ConfigError::Field {
                        path: path.clone(),
                        field: e.path().to_string(),
                        msg: e.inner().to_string(),
                    }
                    .into()
                })
            })?;
        return validate(process);
    }
    let mut p = base.cloned().unwrap_or_default();
    if o.args.is_empty() {
        return Err(Error::Usage("exec needs a command (or --process)".into()));
    }
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &o.user {
        let (uid, gid) = parse_user(u)?;
        let user = p.user_mut();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(o.additional_gids.clone()));
    }
    if !o.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &o.caps {
            let cap: Capability = serde_json::from_value(serde_json::Value::from(name.as_str()))
                .map_err(|_| Error::Usage(format!("--cap {name:?}: unknown capability")))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    _ => caps.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if o.apparmor.is_some() || o.process_label.is_some() {
        logging::warn("exec: --apparmor and --process-label are ignored: this host has neither AppArmor nor SELinux support in brig");
    }
    validate(p)
}

fn validate(p: Process) -> Result<Process, Error> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Usage(
            "process.args must name the program to run".into(),
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::Usage(format!(
            "process.cwd {:?} is not an absolute path",
            p.cwd()
        )));
    }
    Ok(p)
}

/// Runs a process in container `o.id`; returns its exit code, or 0 when detached.
pub fn exec(store: &Store, o: &ExecOptions) -> Result<i32, Error> {
    let c = store.load(&o.id)?;
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => {
            return Err(Error::Usage(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        _ => return Err(Error::Usage("cannot exec in a stopped container".into())),
    }
    let init_pid = c
        .live_pid()
        .ok_or_else(|| Error::Usage("cannot exec in a stopped container".into()))?;
    let spec = c.spec()?;
    let mut process = build_process(spec.process().as_ref(), o)?;
    // runc filters exec'd processes with the container's profile.
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    let listen_fds = super::create::socket_activation();
    if listen_fds > 0 {
        super::create::add_listen_env(&mut process, listen_fds);
    }
    let ns = Plan::join_container(&spec, init_pid)?;
    let mut cgroup = c.cgroup();
    if let (Some(sub), Some(cg)) = (&o.cgroup, &cgroup) {
        let path = cg.path.join(sub.trim_start_matches('/'));
        let sub_cg = crate::cgroups::Cgroup::open(&path)?;
        if !sub_cg.exists() {
            return Err(Error::Usage(format!(
                "--cgroup {sub}: no such sub-cgroup of the container"
            )));
        }
        cgroup = Some(sub_cg);
    }
    let terminal = process.terminal().unwrap_or(false);
    if o.console_socket.is_some() && !o.detach {
        return Err(Error::Usage(
            "cannot use console socket if brig will not detach".into(),
        ));
    }
    let console = ConsoleSocket::for_process(terminal, o.console_socket.as_deref(), !o.detach)?;
    let signals = forwarded_signals();
    if !o.detach {
        signals
            .thread_block()
            .map_err(Error::sys("block signals"))?;
    }
    // SCMP_ACT_NOTIFY: the exec'd process hands its listener to brig, which
    // passes it on to the agent with the process's host pid.
    let relay = match &seccomp {
        Some(f) if f.has_listener() => Some(
            std::os::unix::net::UnixStream::pair()
                .map_err(Error::io("socketpair for the seccomp agent"))?,
        ),
        _ => None,
    };
    let prepared = Prepared {
        agent: relay
            .as_ref()
            .map(|(_, theirs)| std::os::fd::AsRawFd::as_raw_fd(theirs)),
        id: &o.id,
        no_new_keyring: c.saved.no_new_keyring,
        process: &process,
        caps: Sets::from_spec(process.capabilities().as_ref()),
        in_userns: ns.in_user_namespace(),
        preserve_fds: (listen_fds + o.preserve_fds) as i32,
        console: console.as_ref().map(ConsoleSocket::child_fd),
        seccomp: seccomp.as_ref(),
    };
    let run_child = |chan| -> std::convert::Infallible { exec::run(&prepared, chan) };
    let child = Child {
        ns: &ns,
        close_fds: &[],
        run: &run_child,
    };
    let spawned = spawn::spawn_in(&child, cgroup.as_ref())?;
    let pid = spawned.pid.as_raw();
    let ready = spawned
        .wait_ready()
        .map_err(Error::from)
        .and_then(|()| match (&seccomp, &relay) {
            (Some(f), Some((ours, _))) => Ok(f.relay_listener(ours, pid)?),
            _ => Ok(()),
        })
        .and_then(|()| match &o.pid_file {
            Some(p) => super::create::write_pid_file(p, pid),
            None => Ok(()),
        })
        .and_then(|()| match &o.pidfd_socket {
            Some(s) => crate::process::pidfd::send(s, pid).map_err(Error::Usage),
            None => Ok(()),
        })
        .and_then(|()| console.map_or(Ok(None), |c| c.take_master()));
    let pty = match ready {
        Ok(pty) => pty,
        Err(e) => {
            spawned.abort();
            return Err(e);
        }
    };
    spawned.release()?;
    spawned.wait_exec()?;
    if o.detach {
        return Ok(0);
    }
    wait_for(pid, &signals, pty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parsing_is_strict() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        for bad in [
            "",
            ":",
            "1000:",
            ":100",
            "root",
            "1000:wheel",
            "-1",
            "1 000",
            "1000:100:1",
        ] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
    }
}
