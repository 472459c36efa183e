//! Linux namespaces: which to create, which to join, and the id mappings.
//!
//! Paths of namespaces to join are opened in the parent, before any fork,
//! so that a bad path is reported with its name and nothing is spawned.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, LinuxTimeOffset, Spec};

/// Errors from creating or joining namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open namespace path {path} ({kind}): {source}")]
    Open {
        kind: LinuxNamespaceType,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns {kind} {path}: {source}")]
    Join {
        kind: LinuxNamespaceType,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("unshare {flags:?}: {source}")]
    Unshare {
        flags: CloneFlags,
        source: nix::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{call}: {source}")]
    Sys {
        call: &'static str,
        source: nix::Error,
    },
}

/// The clone flag of a namespace type.
pub fn clone_flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is not in nix's CloneFlags on every version.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of a namespace type under /proc/PID/ns.
fn proc_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join.
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub file: File,
}

/// What the container's namespaces will be.
pub struct Plan {
    /// Namespaces to create, user namespace excluded.
    pub new: CloneFlags,
    /// Whether to create a user namespace (done first, then mapped).
    pub new_user: bool,
    /// Namespaces to join; the user namespace, if any, comes first.
    pub join: Vec<Join>,
    pub uid_mappings: Vec<LinuxIdMapping>,
    pub gid_mappings: Vec<LinuxIdMapping>,
    pub time_offsets: HashMap<String, LinuxTimeOffset>,
}

impl Plan {
    /// Reads the namespace list of `spec` and opens every path to join.
    pub fn from_spec(spec: &Spec) -> Result<Plan, NamespaceError> {
        let linux = spec.linux().as_ref();
        let mut plan = Plan {
            new: CloneFlags::empty(),
            new_user: false,
            join: Vec::new(),
            uid_mappings: linux
                .and_then(|l| l.uid_mappings().clone())
                .unwrap_or_default(),
            gid_mappings: linux
                .and_then(|l| l.gid_mappings().clone())
                .unwrap_or_default(),
            time_offsets: linux
                .and_then(|l| l.time_offsets().clone())
                .unwrap_or_default(),
        };
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            match ns.path() {
                Some(path) => {
                    let file = File::open(path).map_err(|source| NamespaceError::Open {
                        kind: ns.typ(),
                        path: path.clone(),
                        source,
                    })?;
                    plan.join.push(Join {
                        kind: ns.typ(),
                        path: path.clone(),
                        file,
                    });
                }
                None if ns.typ() == LinuxNamespaceType::User => plan.new_user = true,
                None => plan.new |= clone_flag(ns.typ()),
            }
        }
        // Joining a user namespace first gives the rights to join the others.
        plan.join
            .sort_by_key(|j| j.kind != LinuxNamespaceType::User);
        Ok(plan)
    }

    /// Joins every namespace the container at `init_pid` has of its own (the
    /// types its config lists), through /proc/PID/ns: what `exec` enters.
    pub fn join_container(spec: &Spec, init_pid: i32) -> Result<Plan, NamespaceError> {
        let mut join = Vec::new();
        let kinds = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .map(|n| n.typ());
        for kind in kinds {
            let path = PathBuf::from(format!("/proc/{init_pid}/ns/{}", proc_name(kind)));
            let file = File::open(&path).map_err(|source| NamespaceError::Open {
                kind,
                path: path.clone(),
                source,
            })?;
            join.push(Join { kind, path, file });
        }
        join.sort_by_key(|j| j.kind != LinuxNamespaceType::User);
        Ok(Plan {
            new: CloneFlags::empty(),
            new_user: false,
            join,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            time_offsets: HashMap::new(),
        })
    }

    /// Whether the container gets a new namespace of `kind`.
    pub fn creates(&self, kind: LinuxNamespaceType) -> bool {
        if kind == LinuxNamespaceType::User {
            self.new_user
        } else {
            self.new.contains(clone_flag(kind))
        }
    }

    /// Whether the container is in a user namespace other than the caller's.
    pub fn in_user_namespace(&self) -> bool {
        self.new_user || self.join.iter().any(|j| j.kind == LinuxNamespaceType::User)
    }

    /// Enters the namespaces, in the calling (stage 1) process.
    ///
    /// `map_ids` is called after the user namespace is made and must return
    /// once the parent has written the id maps. The pid and time namespaces
    /// only take effect for children, so the caller forks the init afterwards.
    pub fn enter(&self, map_ids: impl FnOnce() -> Result<(), String>) -> Result<(), EnterError> {
        let mut joins = self.join.iter().peekable();
        if let Some(j) = joins.next_if(|j| j.kind == LinuxNamespaceType::User) {
            join(j)?;
        }
        if self.new_user {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(|source| NamespaceError::Unshare {
                flags: CloneFlags::CLONE_NEWUSER,
                source,
            })?;
            map_ids().map_err(EnterError::Mapping)?;
        }
        if self.in_user_namespace() {
            become_root()?;
        }
        for j in joins {
            join(j)?;
        }
        if !self.new.is_empty() {
            let new_mount_ns = self.new.contains(CloneFlags::CLONE_NEWNS);
            let old_mount_ns = new_mount_ns
                .then(crate::cgroups::hierarchy::current_mount_namespace)
                .flatten();
            unshare(self.new).map_err(|source| NamespaceError::Unshare {
                flags: self.new,
                source,
            })?;
            if new_mount_ns {
                crate::cgroups::hierarchy::carry_into_new_mount_namespace(old_mount_ns);
            }
        }
        if self.creates(LinuxNamespaceType::Time) {
            self.write_time_offsets()?;
        }
        Ok(())
    }

    /// Writes uid_map and gid_map of the stage 1 process `pid` (in the parent).
    pub fn write_id_maps(&self, pid: i32) -> Result<(), NamespaceError> {
        write_proc(pid, "uid_map", &format_mappings(&self.uid_mappings))?;
        write_proc(pid, "gid_map", &format_mappings(&self.gid_mappings))
    }

    fn write_time_offsets(&self) -> Result<(), NamespaceError> {
        let mut body = String::new();
        for (clock, off) in &self.time_offsets {
            body.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        std::fs::write("/proc/self/timens_offsets", body).map_err(|source| NamespaceError::Write {
            path: "/proc/self/timens_offsets".into(),
            source,
        })
    }
}

/// Failure while entering namespaces.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("writing id mappings: {0}")]
    Mapping(String),
}

fn join(j: &Join) -> Result<(), NamespaceError> {
    setns(j.file.as_fd(), clone_flag(j.kind)).map_err(|source| NamespaceError::Join {
        kind: j.kind,
        path: j.path.clone(),
        source,
    })
}

/// Takes uid and gid 0 of the user namespace just entered, so the rest of
/// setup runs as the namespace's root.
fn become_root() -> Result<(), NamespaceError> {
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    let root = Gid::from_raw(0);
    setresgid(root, root, root).map_err(|source| NamespaceError::Sys {
        call: "setresgid(0) in the user namespace",
        source,
    })?;
    let root = Uid::from_raw(0);
    setresuid(root, root, root).map_err(|source| NamespaceError::Sys {
        call: "setresuid(0) in the user namespace",
        source,
    })
}

/// Renders mappings as /proc/PID/uid_map expects: `inside outside count` lines.
pub fn format_mappings(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_proc(pid: i32, file: &str, body: &str) -> Result<(), NamespaceError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, body).map_err(|source| NamespaceError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_render_one_line_each() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID":0,"hostID":100000,"size":65536},{"containerID":65536,"hostID":1,"size":1}]"#,
        )
        .unwrap();
        assert_eq!(format_mappings(&maps), "0 100000 65536\n65536 1 1\n");
    }

    #[test]
    fn plan_from_default_spec() {
        let spec = crate::config::default_spec(false);
        let plan = Plan::from_spec(&spec).unwrap();
        assert!(plan.creates(LinuxNamespaceType::Pid));
        assert!(plan.creates(LinuxNamespaceType::Mount));
        assert!(!plan.in_user_namespace());
        let spec = crate::config::default_spec(true);
        let plan = Plan::from_spec(&spec).unwrap();
        assert!(plan.new_user && !plan.creates(LinuxNamespaceType::Network));
    }
}
