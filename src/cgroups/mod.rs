//! Cgroups: placing a container and enforcing `linux.resources`.
//!
//! One model serves cgroup v1, pure v2 and hybrid hosts: every controller
//! lives in exactly one directory, either a v1 hierarchy or the unified
//! (v2) one, and each resource is written with the rules of the hierarchy
//! its controller lives in ([`v1`] or [`v2`]). On a hybrid host such as
//! this one, memory, cpu, pids, ... are v1 and hugetlb is v2.
//!
//! Placement: an absolute `linux.cgroupsPath` is taken from each hierarchy's
//! root. An empty or relative one goes under [`DEFAULT_PARENT`], never under
//! the caller's own cgroup (runc puts it there; on a machine whose
//! supervisor owns the caller's cgroup that would hand it our containers).

mod bpf;
pub mod hierarchy;
pub mod stats;
mod v1;
mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources,
};

pub use hierarchy::{hierarchies, is_pure_v2, own_dir, parse_proc_cgroup, Hierarchy};

/// Parent of containers whose cgroupsPath is empty or relative.
pub const DEFAULT_PARENT: &str = "/brig";

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("linux.cgroupsPath {0:?}: systemd cgroup paths (slice:prefix:name) need the systemd cgroup driver, which brig does not have yet")]
    Systemd(String),
    #[error("linux.cgroupsPath {path:?}: {msg}")]
    BadPath { path: String, msg: String },
    #[error("linux.resources.{resource}: cannot write {value:?} to {file}: {source}")]
    Write {
        resource: String,
        file: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("linux.resources.{resource}: {msg}")]
    Unsupported { resource: String, msg: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Works out the cgroup path (from the hierarchy roots) for a container.
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> Result<PathBuf, CgroupError> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.contains(':') {
        return Err(CgroupError::Systemd(raw));
    }
    let p = Path::new(&raw);
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(CgroupError::BadPath {
            path: raw,
            msg: "must not contain '..'".into(),
        });
    }
    let path = if raw.is_empty() {
        Path::new(DEFAULT_PARENT).join(id)
    } else if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(DEFAULT_PARENT).join(p)
    };
    if path == Path::new("/") {
        return Err(CgroupError::BadPath {
            path: raw,
            msg: "a container cannot use the root cgroup".into(),
        });
    }
    Ok(path)
}

/// One directory of the container's cgroup.
#[derive(Debug, Clone)]
struct Dir {
    path: PathBuf,
    /// The hierarchy's mount point.
    mount: PathBuf,
    unified: bool,
    controllers: Vec<String>,
}

/// A container's cgroup across all hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The path from the hierarchy roots, e.g. `/default/ID`.
    pub path: PathBuf,
    dirs: Vec<Dir>,
}

impl Cgroup {
    /// Finds where the cgroup `path` lives on this host's hierarchies.
    pub fn open(path: &Path) -> Result<Cgroup, CgroupError> {
        let mounted = hierarchy::mounted().map_err(|source| CgroupError::Io {
            what: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
        let rel = path.strip_prefix("/").unwrap_or(path);
        let mut dirs = Vec::new();
        for h in mounted.iter() {
            let controllers = if h.unified {
                fs::read_to_string(h.mount_point.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            } else {
                h.key
                    .split(',')
                    .filter(|c| !c.starts_with("name="))
                    .map(String::from)
                    .collect()
            };
            dirs.push(Dir {
                path: h.mount_point.join(rel),
                mount: h.mount_point.clone(),
                unified: h.unified,
                controllers,
            });
        }
        if dirs.is_empty() {
            return Err(CgroupError::BadPath {
                path: path.display().to_string(),
                msg: "this host has no cgroup hierarchy mounted".into(),
            });
        }
        Ok(Cgroup {
            path: path.to_path_buf(),
            dirs,
        })
    }

    /// On a pure v2 host, the container's directory opened for clone3's
    /// CLONE_INTO_CGROUP.
    pub fn v2_dir_fd(&self) -> Option<std::os::fd::OwnedFd> {
        let d = self.dirs.first().filter(|_| self.is_v2())?;
        fs::File::open(&d.path).ok().map(Into::into)
    }

    /// Whether the host is pure cgroup v2.
    pub fn is_v2(&self) -> bool {
        self.dirs.iter().all(|d| d.unified)
    }

    /// The directory holding `controller`: a v1 hierarchy if it has one, else the unified one.
    fn dir_of(&self, controller: &str) -> Option<&Dir> {
        self.dirs
            .iter()
            .find(|d| !d.unified && d.controllers.iter().any(|c| c == controller))
            .or_else(|| {
                self.dirs
                    .iter()
                    .find(|d| d.unified && d.controllers.iter().any(|c| c == controller))
            })
    }

    fn unified(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.unified)
    }

    /// Makes the directories (and, on v2, enables the controllers on the way down).
    pub fn create(&self) -> Result<(), CgroupError> {
        for d in &self.dirs {
            if d.unified && self.is_v2() {
                v2::enable_controllers(&d.mount, &d.path)?;
            }
            fs::create_dir_all(&d.path).map_err(|source| CgroupError::Io {
                what: "create cgroup",
                path: d.path.clone(),
                source,
            })?;
            if !d.unified && d.controllers.iter().any(|c| c == "cpuset") {
                v1::init_cpuset(&d.path)?;
            }
        }
        Ok(())
    }

    /// Writes every resource of `r`, each with the rules of the hierarchy
    /// its controller lives in.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let r = &without_zeros(r);
        if let Some(m) = r.memory() {
            match self.place("memory", "memory", "memory")? {
                (d, false) => v1::memory(&d.path, m)?,
                (d, true) => v2::memory(&d.path, m)?,
            }
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.realtime_period().is_some()
                || c.realtime_runtime().is_some()
                || c.idle().is_some()
            {
                match self.place("cpu", "cpu", "cpu")? {
                    (d, false) => v1::cpu(&d.path, c)?,
                    (d, true) => v2::cpu(&d.path, c)?,
                }
            }
            if c.cpus().is_some() || c.mems().is_some() {
                let (d, _) = self.place("cpu.cpus", "cpuset", "cpuset")?;
                v1::cpuset(&d.path, c)?;
            }
        }
        if let Some(p) = r.pids() {
            let (d, _) = self.place("pids", "pids", "pids")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write_file("pids.limit", &d.path.join("pids.max"), &v)?;
        }
        if let Some(b) = r.block_io() {
            match self.place("blockIO", "blkio", "io")? {
                (d, false) => v1::block_io(&d.path, b)?,
                (d, true) => v2::block_io(&d.path, b)?,
            }
        }
        for h in r.hugepage_limits().iter().flatten() {
            match self.place("hugepageLimits", "hugetlb", "hugetlb")? {
                (d, false) => v1::hugetlb(&d.path, h)?,
                (d, true) => {
                    let enabled =
                        fs::read_to_string(d.path.join("cgroup.controllers")).unwrap_or_default();
                    if !enabled.split_whitespace().any(|c| c == "hugetlb") {
                        // On a hybrid host that would mean changing the
                        // host's root cgroup, which brig never does.
                        return Err(CgroupError::Unsupported {
                            resource: "hugepageLimits".into(),
                            msg: format!("the hugetlb controller is not enabled for {} (this host has it only in its cgroup v2 hierarchy)", d.path.display()),
                        });
                    }
                    v2::hugetlb(&d.path, h)?
                }
            }
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let (d, _) = self.place("network.classID", "net_cls", "-")?;
                write_file(
                    "network.classID",
                    &d.path.join("net_cls.classid"),
                    &id.to_string(),
                )?;
            }
            for p in n.priorities().iter().flatten() {
                let (d, _) = self.place("network.priorities", "net_prio", "-")?;
                write_file(
                    "network.priorities",
                    &d.path.join("net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if let Some(rdma) = r.rdma() {
            for (dev, l) in rdma {
                let (d, _) = self.place("rdma", "rdma", "rdma")?;
                let mut v = dev.clone();
                if let Some(h) = l.hca_handles() {
                    v.push_str(&format!(" hca_handle={h}"));
                }
                if let Some(o) = l.hca_objects() {
                    v.push_str(&format!(" hca_object={o}"));
                }
                write_file("rdma", &d.path.join("rdma.max"), &v)?;
            }
        }
        if let Some(devices) = r.devices() {
            if let Some(d) = self.dir_of("devices").filter(|d| !d.unified) {
                v1::devices(&d.path, devices)?;
            } else if self.is_v2() {
                v2::devices(&self.dirs[0].path, devices)?;
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            match self.unified() {
                Some(d) if self.is_v2() => v2::unified(&d.path, u)?,
                _ => {
                    return Err(CgroupError::Unsupported {
                        resource: "unified".into(),
                        msg: "needs a pure cgroup v2 host".into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The directory of a controller (v1 name, v2 name) and whether it is unified.
    pub fn controller_dir(&self, v1: &str, v2: &str) -> Option<(PathBuf, bool)> {
        self.place("", v1, v2)
            .ok()
            .map(|(d, u)| (d.path.clone(), u))
    }

    /// The directory for a resource: its v1 controller's, else the unified
    /// one if the v2 controller is available there. The bool says unified.
    fn place(&self, resource: &str, v1: &str, v2: &str) -> Result<(&Dir, bool), CgroupError> {
        if let Some(d) = self
            .dirs
            .iter()
            .find(|d| !d.unified && d.controllers.iter().any(|c| c == v1))
        {
            return Ok((d, false));
        }
        if let Some(d) = self
            .dirs
            .iter()
            .find(|d| d.unified && d.controllers.iter().any(|c| c == v2))
        {
            return Ok((d, true));
        }
        Err(CgroupError::Unsupported {
            resource: resource.into(),
            msg: format!("this host has no {v1} controller (v1) and no {v2} controller in its cgroup v2 hierarchy"),
        })
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write_file(
                "cgroup placement",
                &d.path.join("cgroup.procs"),
                &pid.to_string(),
            )?;
        }
        Ok(())
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let d = self
            .dir_of("pids")
            .or_else(|| self.dir_of("freezer"))
            .unwrap_or(&self.dirs[0]);
        let file = d.path.join("cgroup.procs");
        let text = fs::read_to_string(&file).map_err(|source| CgroupError::Io {
            what: "read",
            path: file,
            source,
        })?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Whether the cgroup's directories still exist.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.path.exists())
    }

    /// Freezes (pause) or thaws (resume) every process in the cgroup.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match self.dir_of("freezer") {
            Some(d) if !d.unified => v1::freeze(&d.path, frozen),
            _ => match self.unified() {
                Some(d) if self.is_v2() => v2::freeze(&d.path, frozen),
                _ => Err(CgroupError::Unsupported {
                    resource: "freezer".into(),
                    msg: "this host has no freezer (v1) and no cgroup.freeze (v2)".into(),
                }),
            },
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        match self.dir_of("freezer") {
            Some(d) if !d.unified => v1::is_frozen(&d.path),
            _ => self
                .unified()
                .filter(|_| self.is_v2())
                .is_some_and(|d| v2::is_frozen(&d.path)),
        }
    }

    /// Sends `sig` to every process in the cgroup; the cgroup is frozen
    /// meanwhile so that no process escapes by forking.
    pub fn kill_all(&self, sig: i32) -> Result<(), CgroupError> {
        if sig == libc::SIGKILL && self.is_v2() {
            if let Some(d) = self.unified() {
                let f = d.path.join("cgroup.kill");
                if f.exists() {
                    return write_file("cgroup.kill", &f, "1");
                }
            }
        }
        let can_freeze = self.freeze(true).is_ok();
        for pid in self.pids()? {
            // SAFETY: kill(2) with a pid from cgroup.procs and a valid signal.
            unsafe { libc::kill(pid, sig) };
        }
        if can_freeze {
            self.freeze(false)?;
        }
        Ok(())
    }

    /// Removes the cgroup's directories, waiting briefly for exiting processes.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in &self.dirs {
            loop {
                match fs::remove_dir(&d.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // Live processes that are not ours (a cgroupsPath shared
                    // with another container), or child cgroups: the cgroup
                    // is not ours alone to remove.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && !only_dying_inside(&d.path) =>
                    {
                        break
                    }
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(source) => {
                        return Err(CgroupError::Io {
                            what: "remove cgroup",
                            path: d.path.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a busy cgroup holds only processes on their way out (gone or
/// zombies) and no child cgroups, so that waiting will empty it.
fn only_dying_inside(dir: &Path) -> bool {
    let has_children = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        })
        .unwrap_or(false);
    if has_children {
        return false;
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    procs.lines().all(|pid| {
        let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        // Field 3, after the command in parentheses, is the state.
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The device rules a container's cgroup gets, as runc builds them: the
/// config's rules, then an allow rule for each `linux.devices` node, then
/// the devices every container needs (null, zero, full, random, urandom,
/// tty, ptmx, pts, tun, and mknod of anything), which later rules keep open.
pub fn device_rules(spec: &oci_spec::runtime::Spec) -> Option<Vec<LinuxDeviceCgroup>> {
    let linux = spec.linux().as_ref()?;
    let mut rules = linux.resources().as_ref()?.devices().clone()?;
    let rule = |typ, major, minor, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_string()));
        r
    };
    for d in linux.devices().iter().flatten() {
        // The devices cgroup knows only character and block devices.
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            _ => continue,
        };
        rules.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    use LinuxDeviceType::{B, C};
    let defaults = [
        (C, None, None, "m"),
        (B, None, None, "m"),
        (C, Some(1), Some(3), "rwm"),
        (C, Some(1), Some(8), "rwm"),
        (C, Some(1), Some(7), "rwm"),
        (C, Some(5), Some(0), "rwm"),
        (C, Some(1), Some(5), "rwm"),
        (C, Some(1), Some(9), "rwm"),
        (C, Some(136), None, "rwm"),
        (C, Some(5), Some(2), "rwm"),
        (C, Some(10), Some(200), "rwm"),
    ];
    for (t, major, minor, access) in defaults {
        rules.push(rule(t, major, minor, access));
    }
    Some(rules)
}

/// Drops the values that runc treats as "not set" when they are 0 (Docker's
/// `update` sends zeros for everything it leaves alone), and the groups
/// left with nothing in them.
fn without_zeros(r: &LinuxResources) -> LinuxResources {
    fn set<T: Copy + Default + PartialEq>(v: Option<T>) -> Option<T> {
        v.filter(|x| *x != T::default())
    }
    let mut r = r.clone();
    if let Some(m) = r.memory_mut() {
        m.set_limit(set(m.limit()));
        m.set_reservation(set(m.reservation()));
        m.set_swap(set(m.swap()));
        m.set_kernel(set(m.kernel()));
        m.set_kernel_tcp(set(m.kernel_tcp()));
    }
    if let Some(c) = r.cpu_mut() {
        c.set_shares(set(c.shares()));
        c.set_quota(set(c.quota()));
        c.set_period(set(c.period()));
        c.set_burst(set(c.burst()));
        c.set_realtime_runtime(set(c.realtime_runtime()));
        c.set_realtime_period(set(c.realtime_period()));
    }
    if let Some(b) = r.block_io_mut() {
        b.set_weight(set(b.weight()));
        b.set_leaf_weight(set(b.leaf_weight()));
    }
    if r.memory()
        .as_ref()
        .is_some_and(|m| *m == LinuxMemory::default())
    {
        r.set_memory(None);
    }
    if r.cpu().as_ref().is_some_and(|c| *c == LinuxCpu::default()) {
        r.set_cpu(None);
    }
    if r.block_io()
        .as_ref()
        .is_some_and(|b| *b == LinuxBlockIo::default())
    {
        r.set_block_io(None);
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    if r.network()
        .as_ref()
        .is_some_and(|n| *n == LinuxNetwork::default())
    {
        r.set_network(None);
    }
    if r.rdma().as_ref().is_some_and(|m| m.is_empty()) {
        r.set_rdma(None);
    }
    if r.unified().as_ref().is_some_and(|m| m.is_empty()) {
        r.set_unified(None);
    }
    r
}

/// Writes a hugetlb limit for `page_size` into the hierarchy's file
/// (`suffixes`: the limit's and the reservation limit's, which only newer
/// kernels have); a page size the host lacks is an error naming the file.
fn write_hugetlb(
    dir: &Path,
    page_size: &str,
    suffixes: (&str, &str),
    value: &str,
) -> Result<(), CgroupError> {
    let file = dir.join(format!("hugetlb.{page_size}.{}", suffixes.0));
    if !file.exists() {
        return Err(CgroupError::Unsupported {
            resource: "hugepageLimits".into(),
            msg: format!(
                "page size {page_size:?} is not supported by this host ({} is missing)",
                file.display()
            ),
        });
    }
    write_file("hugepageLimits", &file, value)?;
    let rsvd = dir.join(format!("hugetlb.{page_size}.{}", suffixes.1));
    if rsvd.exists() {
        write_file("hugepageLimits", &rsvd, value)?;
    }
    Ok(())
}

/// Writes `value` to a cgroup file; the error names the resource and the file.
pub(crate) fn write_file(resource: &str, file: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(file, value).map_err(|source| CgroupError::Write {
        resource: resource.to_string(),
        file: file.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_unset_and_empty_groups_dropped() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":0,"swap":0},"cpu":{"shares":0,"quota":50000},
                "pids":{"limit":0},"blockIO":{"weight":0},"devices":[]}"#,
        )
        .unwrap();
        let r = without_zeros(&r);
        assert_eq!(r.memory(), &None);
        assert_eq!(r.pids(), &None);
        assert_eq!(r.block_io(), &None);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.shares(), cpu.quota()), (None, Some(50000)));
        assert_eq!(r.devices(), &Some(vec![]));
    }

    #[test]
    fn empty_and_relative_paths_go_under_the_fixed_parent() {
        assert_eq!(
            container_path(None, "c1").unwrap(),
            PathBuf::from("/brig/c1")
        );
        assert_eq!(
            container_path(Some(Path::new("")), "c1").unwrap(),
            PathBuf::from("/brig/c1")
        );
        assert_eq!(
            container_path(Some(Path::new("pod/c1")), "c1").unwrap(),
            PathBuf::from("/brig/pod/c1")
        );
        assert_eq!(
            container_path(Some(Path::new("/default/c1")), "c1").unwrap(),
            PathBuf::from("/default/c1")
        );
        assert!(matches!(
            container_path(Some(Path::new("system.slice:docker:c1")), "c1"),
            Err(CgroupError::Systemd(_))
        ));
        assert!(container_path(Some(Path::new("/a/../b")), "c1").is_err());
        assert!(container_path(Some(Path::new("/")), "c1").is_err());
    }
}
