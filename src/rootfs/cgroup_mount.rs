//! `cgroup` and `cgroup2` mounts: the container sees only its own cgroups.
//!
//! On a pure v2 host this is one cgroup2 mount (with a cgroup namespace) or
//! a bind of the container's own cgroup directory. On v1 and hybrid hosts it
//! is runc's layout: a tmpfs at the destination holding one directory per
//! hierarchy, each a fresh cgroup mount (cgroup namespace) or a bind of the
//! container's own directory in that hierarchy.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::mount_options::MountOptions;
use super::mounts::{bind_fd, remount, sys_mount, Context};
use super::resolve::Create;
use super::RootfsError;
use crate::cgroups;

/// Mounts the container's cgroups at `dest`.
pub fn mount_cgroup(
    ctx: &Context,
    what: &str,
    dest: &Path,
    typ: &str,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let hs = cgroups::hierarchy::mounted()
        .map_err(|e| RootfsError::Io(format!("read /proc/self/mountinfo: {e}")))?;
    let own = OwnCgroups::default();
    let flags = opts.flags & !(libc::MS_BIND | libc::MS_REC);

    if typ == "cgroup2" || cgroups::is_pure_v2(&hs) {
        let h = hs.iter().find(|h| h.unified).ok_or_else(|| {
            RootfsError::Config(format!("{what}: the host has no cgroup2 hierarchy"))
        })?;
        return mount_hierarchy(ctx, what, dest, h, &own, flags);
    }

    let target = ctx.root.resolve(dest, Create::Dir)?;
    sys_mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        flags & !libc::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(|e| RootfsError::mount(what, e))?;
    for h in hs.iter() {
        let name = if h.unified {
            "unified".to_string()
        } else {
            match h.mount_point.file_name() {
                Some(n) => n.to_string_lossy().into_owned(),
                None => continue,
            }
        };
        mount_hierarchy(ctx, what, &dest.join(&name), h, &own, flags)?;
        // Co-mounted controllers (cpu,cpuacct) get a link per controller, as on the host.
        if name.contains(',') {
            for part in name.split(',') {
                let (parent, _) = ctx.root.resolve_parent(&dest.join(part))?;
                let _ = nix::unistd::symlinkat(name.as_str(), parent.as_fd(), part);
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let target = ctx.root.resolve(dest, Create::Nothing)?;
        remount(&target, flags, what)?;
    }
    Ok(())
}

/// The init's own cgroups (/proc/self/cgroup), read the first time a bind
/// needs them: with a cgroup namespace every hierarchy is a fresh mount.
#[derive(Default)]
struct OwnCgroups(OnceCell<HashMap<String, PathBuf>>);

impl OwnCgroups {
    fn get(&self) -> Result<&HashMap<String, PathBuf>, RootfsError> {
        if let Some(own) = self.0.get() {
            return Ok(own);
        }
        let text = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| RootfsError::Io(format!("read /proc/self/cgroup: {e}")))?;
        Ok(self.0.get_or_init(|| cgroups::parse_proc_cgroup(&text)))
    }
}

/// Mounts one hierarchy at `dest`: a new mount inside a cgroup namespace,
/// otherwise a bind of the container's own directory.
fn mount_hierarchy(
    ctx: &Context,
    what: &str,
    dest: &Path,
    h: &cgroups::Hierarchy,
    own: &OwnCgroups,
    flags: libc::c_ulong,
) -> Result<(), RootfsError> {
    let target = ctx.root.resolve(dest, Create::Dir)?;
    // A v1 hierarchy can only be mounted from the initial user namespace.
    if ctx.cgroup_ns && (h.unified || !ctx.in_userns) {
        let (fstype, data) = if h.unified {
            ("cgroup2", String::new())
        } else if let Some(name) = h.key.strip_prefix("name=") {
            ("cgroup", format!("none,name={name}"))
        } else {
            ("cgroup", h.key.clone())
        };
        return sys_mount(Some(fstype), &target, Some(fstype), flags, Some(&data))
            .map_err(|e| RootfsError::mount(what, e));
    }
    let Some(dir) = cgroups::own_dir(h, own.get()?) else {
        return Ok(());
    };
    let src = nix::fcntl::open(
        &dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| RootfsError::sys("open", &dir.display().to_string(), e))?;
    bind_fd(&src, &target, false).map_err(|e| RootfsError::mount(what, e))?;
    let target = ctx.root.resolve(dest, Create::Nothing)?;
    remount(&target, flags | libc::MS_BIND, what)
}
