//! Container state on disk: one directory per container under `--root`.
//!
//! `state.json` is replaced atomically (write + rename), so readers never
//! need the lock; commands that change a container hold an flock on its
//! directory. The init's start time is recorded so that a recycled pid can
//! never make a stopped container look alive.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::{Hooks, LinuxNamespaceType, Spec};

use crate::cgroups::{self, Cgroup};
use serde::{Deserialize, Serialize};

/// The file in a container's directory that holds its `Saved` state.
pub const STATE_FILE: &str = "state.json";
/// The file in a container's directory that holds the spec it was created
/// from (with the resources `update` changed since).
pub const CONFIG_FILE: &str = "config.json";
/// The fifo `start` opens to release a created container's init.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Errors about container state and ids.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.', and not '.' or '..'")]
    InvalidId(String),
    #[error("container with id {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt state: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks an id as runc does: it becomes a directory name, so no `/`, `..` or control characters.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// The lifecycle status the runtime spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    /// The name `state` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What brig records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    /// Host pid of the init; 0 while creating.
    pub pid: i32,
    /// Start time of the init in clock ticks since boot (/proc/PID/stat field 22).
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup: linux.cgroupsPath as `cgroups::container_path`
    /// resolves it; None if that was invalid (then there is no cgroup).
    pub cgroup_path: Option<PathBuf>,
    /// Whether linux.namespaces gave the container a pid namespace of its own.
    #[serde(default)]
    pub own_pid_namespace: bool,
    /// The spec's hooks: start and delete run some of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Created with `--no-new-keyring`: exec keeps the caller's keyring too.
    #[serde(default)]
    pub no_new_keyring: bool,
}

impl Saved {
    /// What the lifecycle commands need of `spec`, so they never parse it:
    /// the whole spec is kept apart in CONFIG_FILE, for exec and update.
    pub fn facts_from(&mut self, spec: &Spec) {
        let linux = spec.linux().as_ref();
        self.cgroup_path =
            cgroups::container_path(linux.and_then(|l| l.cgroups_path().as_deref()), &self.id).ok();
        self.own_pid_namespace = linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none());
        self.hooks = spec.hooks().clone();
    }
}

/// The state document of the runtime spec, in runc's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciState<'a> {
    oci_version: &'a str,
    id: &'a str,
    pid: i32,
    status: &'a str,
    bundle: &'a Path,
    rootfs: &'a Path,
    created: &'a str,
    owner: &'a str,
    annotations: &'a BTreeMap<String, String>,
}

/// A container as found on disk.
#[derive(Debug)]
pub struct Container {
    pub dir: PathBuf,
    pub saved: Saved,
}

impl Container {
    /// The id.
    pub fn id(&self) -> &str {
        &self.saved.id
    }

    /// Works out the status from the init process and the exec fifo.
    pub fn status(&self) -> Status {
        if self.saved.pid <= 0 {
            return Status::Creating;
        }
        if !process_alive(self.saved.pid, self.saved.init_start_time) {
            return Status::Stopped;
        }
        if self.dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if self.cgroup().is_some_and(|c| c.is_frozen()) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The whole spec the container was created from.
    pub fn spec(&self) -> Result<Spec, StateError> {
        let path = self.dir.join(CONFIG_FILE);
        let body = fs::read(&path).map_err(io("read", &path))?;
        serde_json::from_slice(&body).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Records the spec the container runs with: `json` is its JSON text.
    pub fn save_spec(&self, json: &[u8]) -> Result<(), StateError> {
        let tmp = self.dir.join(".config.json.tmp");
        write_atomic(&tmp, &self.dir.join(CONFIG_FILE), json)
    }

    /// The container's cgroup, if it has one on this host.
    pub fn cgroup(&self) -> Option<Cgroup> {
        let path = self.saved.cgroup_path.as_deref()?;
        Cgroup::open(path).ok().filter(Cgroup::exists)
    }

    /// The init pid if it is still the process brig started.
    pub fn live_pid(&self) -> Option<i32> {
        (self.saved.pid > 0 && process_alive(self.saved.pid, self.saved.init_start_time))
            .then_some(self.saved.pid)
    }

    /// runc's state JSON (`state`, `list --format json`, and hooks' stdin).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if matches!(status, Status::Stopped) {
            0
        } else {
            self.saved.pid
        };
        // A struct keeps runc's field order (a json! map would sort the keys).
        let state = OciState {
            oci_version: crate::OCI_VERSION,
            id: &self.saved.id,
            pid,
            status: status.as_str(),
            bundle: &self.saved.bundle,
            rootfs: &self.saved.rootfs,
            created: &self.saved.created,
            owner: &self.saved.owner,
            annotations: &self.saved.annotations,
        };
        serde_json::to_value(state).unwrap_or_default()
    }

    /// Replaces state.json atomically.
    pub fn save(&self) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let dst = self.dir.join(STATE_FILE);
        let body = serde_json::to_vec(&self.saved).map_err(|source| StateError::Corrupt {
            path: dst.clone(),
            source,
        })?;
        write_atomic(&tmp, &dst, &body)
    }
}

/// Writes `body` to `tmp`, syncs it and renames it over `dst`.
pub fn write_atomic(tmp: &Path, dst: &Path, body: &[u8]) -> Result<(), StateError> {
    let mut f = File::create(tmp).map_err(io("create", tmp))?;
    f.write_all(body).map_err(io("write", tmp))?;
    fs::rename(tmp, dst).map_err(io("rename to", dst))
}

/// Whether `pid` is alive, not a zombie, and started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    match read_stat(pid) {
        Some((state, start)) => state != 'Z' && state != 'X' && start == start_time,
        None => false,
    }
}

/// The start time of `pid` in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}

/// Reads the state letter and start time from /proc/PID/stat.
fn read_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) comes field 4; starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The `--root` directory holding one directory per container.
pub struct Store {
    root: PathBuf,
}

/// A container directory being created; removed on drop unless committed.
pub struct NewContainer {
    pub dir: PathBuf,
    lock: Option<Flock<File>>,
    committed: bool,
}

impl NewContainer {
    /// The locked directory, for the init to open the exec fifo from.
    pub fn dir_file(&self) -> &File {
        self.lock.as_ref().expect("lock is held until drop")
    }

    /// Keeps the directory: the container now exists.
    pub fn commit(mut self) -> ContainerLock {
        self.committed = true;
        ContainerLock {
            _lock: self.lock.take().expect("lock is held until commit"),
        }
    }
}

impl Drop for NewContainer {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// An exclusive lock on one container, held while it changes.
pub struct ContainerLock {
    _lock: Flock<File>,
}

impl Store {
    /// A store at `root` (created on first use).
    pub fn new(root: &Path) -> Self {
        // create changes to the bundle directory; a relative root must not
        // move with it.
        Store {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `id`: makes its directory and locks it.
    pub fn create(&self, id: &str) -> Result<NewContainer, StateError> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io("create state root", &self.root))?;
        let dir = self.dir_of(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StateError::AlreadyExists(id.to_string()))
            }
            Err(e) => return Err(io("create", &dir)(e)),
        }
        // The directory must be searchable by the container's (possibly
        // unprivileged) init, which opens the exec fifo inside it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).map_err(io("chmod", &dir))?;
        let mut new = NewContainer {
            dir: dir.clone(),
            lock: None,
            committed: false,
        };
        new.lock = Some(lock_dir(&dir)?);
        Ok(new)
    }

    /// Reads a container's state without locking.
    pub fn load(&self, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        let dir = self.dir_of(id);
        let path = dir.join(STATE_FILE);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        let saved =
            serde_json::from_slice(&body).map_err(|source| StateError::Corrupt { path, source })?;
        Ok(Container { dir, saved })
    }

    /// Locks a container and reads its state under the lock.
    pub fn lock(&self, id: &str) -> Result<(ContainerLock, Container), StateError> {
        validate_id(id)?;
        let dir = self.dir_of(id);
        let lock = match lock_dir(&dir) {
            Ok(l) => l,
            Err(StateError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(e),
        };
        let c = self.load(id)?;
        Ok((ContainerLock { _lock: lock }, c))
    }

    /// Every container with a readable state, sorted by id.
    pub fn list(&self) -> Result<Vec<Container>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            match self.load(id) {
                Ok(c) => out.push(c),
                // A container still being created, or one that vanished.
                Err(StateError::NotFound(_)) | Err(StateError::InvalidId(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
        Ok(out)
    }

    /// Removes a container's directory (the caller holds its lock).
    pub fn remove(&self, c: &Container) -> Result<(), StateError> {
        match fs::remove_dir_all(&c.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &c.dir)(e)),
        }
    }
}

fn lock_dir(dir: &Path) -> Result<Flock<File>, StateError> {
    let f = File::open(dir).map_err(io("open", dir))?;
    let _ = f.as_fd();
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
        what: "lock",
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_come_from_the_spec() {
        let mut spec = crate::config::default_spec(false);
        let text = r#"{"poststop":[{"path":"/bin/true","args":["true","x"]}]}"#;
        spec.set_hooks(Some(serde_json::from_str(text).unwrap()));
        if let Some(l) = spec.linux_mut() {
            l.set_cgroups_path(Some(PathBuf::from("/a/b")));
        }
        let mut saved = Saved {
            id: "c1".into(),
            pid: 0,
            init_start_time: 0,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created: String::new(),
            owner: String::new(),
            annotations: BTreeMap::new(),
            cgroup_path: None,
            own_pid_namespace: false,
            hooks: None,
            no_new_keyring: false,
        };
        saved.facts_from(&spec);
        // Round trip through state.json's text, as a later command sees it.
        let saved: Saved = serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        assert_eq!(saved.hooks, spec.hooks().clone());
        assert_eq!(saved.cgroup_path, Some(PathBuf::from("/a/b")));
        assert!(saved.own_pid_namespace);
        // A relative path is placed under brig's own cgroup, never the caller's.
        if let Some(l) = spec.linux_mut() {
            l.set_cgroups_path(Some(PathBuf::from("x/y")));
            l.set_namespaces(Some(vec![]));
        }
        let mut relative = saved.clone();
        relative.facts_from(&spec);
        assert_eq!(relative.cgroup_path, Some(PathBuf::from("/brig/x/y")));
        assert!(!relative.own_pid_namespace);
    }

    #[test]
    fn ids() {
        for good in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            validate_id(good).expect(good);
        }
        for bad in ["", ".", "..", "a/b", "../x", "a\nb", "a b", "a\u{7f}"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_process_is_alive_and_recycled_pid_is_not() {
        let pid = std::process::id() as i32;
        let start = process_start_time(pid).expect("own stat");
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }
}
