//! The container's root filesystem, built inside its mount namespace.
//!
//! [`prepare`] runs in the container's init before pivot_root, [`finish`]
//! after it. Everything inside the rootfs is reached through
//! [`resolve::Root`], which never follows a symlink out of it.

mod cgroup_mount;
mod copy;
pub mod devices;
pub mod mount_options;
pub mod mounts;
pub mod resolve;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::Spec;

use crate::mountinfo;
use resolve::{Create, ResolveError, Root};

/// A failure while building the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{what}: {source}")]
    Mount { what: String, source: nix::Error },
    #[error("{call} {target}: {source}")]
    Sys {
        call: &'static str,
        target: String,
        source: nix::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}

impl RootfsError {
    pub(crate) fn mount(what: &str, source: nix::Error) -> Self {
        RootfsError::Mount {
            what: format!("mount {what}"),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, target: &str, source: nix::Error) -> Self {
        RootfsError::Sys {
            call,
            target: target.to_string(),
            source,
        }
    }
}

/// How the rootfs is to be built.
pub struct Options<'a> {
    pub spec: &'a Spec,
    /// Absolute path of the rootfs on the host.
    pub rootfs: &'a Path,
    pub in_userns: bool,
    pub cgroup_ns: bool,
    /// `--no-pivot`: chroot instead of pivot_root.
    pub no_pivot: bool,
}

/// Builds the rootfs: mounts, devices, the working directory.
pub fn prepare(o: &Options) -> Result<(), RootfsError> {
    let propagation = make_host_mounts_private(o.spec)?;
    bind_rootfs_onto_itself(o.rootfs)?;
    // After a recursive rslave or rprivate no mount is shared any more;
    // only a shared rootfsPropagation leaves a parent that needs the check.
    if propagation & libc::MS_SHARED != 0 {
        make_parent_mount_private(o.rootfs)?;
    }
    let root = Root::open(o.rootfs)?;
    let ctx = mounts::Context {
        root: &root,
        rootfs: o.rootfs,
        in_userns: o.in_userns,
        cgroup_ns: o.cgroup_ns,
    };
    for (i, m) in o.spec.mounts().iter().flatten().enumerate() {
        mounts::mount_entry(&ctx, i, m)?;
    }
    if devices::should_populate(o.spec) {
        devices::create_nodes(&root, &devices::nodes(o.spec), o.in_userns)?;
        devices::create_links(&root)?;
    }
    create_cwd(o.spec, &root)
}

/// Makes the prepared rootfs the process's `/`: pivot_root, or chroot with
/// `--no-pivot`.
pub fn enter(o: &Options) -> Result<(), RootfsError> {
    if o.no_pivot {
        chroot_into(o.rootfs)
    } else {
        pivot_into(o.rootfs)
    }
}

/// After pivot_root: masked and read-only paths, a read-only root, and the
/// root's propagation.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    let root = Root::open(Path::new("/"))?;
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(&root, Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        make_readonly(&root, Path::new(p))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let fd = root.resolve(Path::new("/"), Create::Nothing)?;
        mounts::remount(&fd, libc::MS_BIND | libc::MS_RDONLY, "/ read-only")?;
    }
    if let Some(flag) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(mount_options::propagation_flag)
    {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::from_bits_retain(flag),
            None::<&str>,
        )
        .map_err(|e| RootfsError::sys("set propagation of", "/", e))?;
    }
    Ok(())
}

/// Stops mounts made in the container from reaching the host: `/` becomes
/// rslave (or what linux.rootfsPropagation asks for). Returns the flag set.
fn make_host_mounts_private(spec: &Spec) -> Result<libc::c_ulong, RootfsError> {
    let flag = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(mount_options::propagation_flag)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::from_bits_retain(flag | libc::MS_REC),
        None::<&str>,
    )
    .map(|()| flag)
    .map_err(|e| RootfsError::sys("set propagation of", "/", e))
}

/// pivot_root needs the new root to be a mount point.
fn bind_rootfs_onto_itself(rootfs: &Path) -> Result<(), RootfsError> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| RootfsError::sys("bind rootfs onto itself", &rootfs.display().to_string(), e))
}

/// pivot_root refuses a shared parent mount; make it private if it is shared.
fn make_parent_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let Some(parent) = rootfs.parent() else {
        return Ok(());
    };
    let text = mountinfo::read_self()
        .map_err(|e| RootfsError::Io(format!("read /proc/self/mountinfo: {e}")))?;
    let table = mountinfo::parse(&text);
    let Some(m) = table
        .iter()
        .filter(|m| parent.starts_with(m.mount_point()))
        .max_by_key(|m| m.mount_point.len())
    else {
        return Ok(());
    };
    if m.optional.split(' ').any(|f| f.starts_with("shared:")) {
        mount(
            None::<&str>,
            m.mount_point(),
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| RootfsError::sys("make private", &m.mount_point, e))?;
    }
    Ok(())
}

/// runc creates the working directory if the image lacks it.
fn create_cwd(spec: &Spec, root: &Root) -> Result<(), RootfsError> {
    if let Some(p) = spec.process().as_ref() {
        root.resolve(p.cwd(), Create::Dir)?;
    }
    Ok(())
}

/// pivot_root(".", ".") then detaches the old root stacked underneath.
fn pivot_into(rootfs: &Path) -> Result<(), RootfsError> {
    let err = |call, e| RootfsError::sys(call, &rootfs.display().to_string(), e);
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old = open("/", dir, Mode::empty()).map_err(|e| err("open old root", e))?;
    let new = open(rootfs, dir, Mode::empty()).map_err(|e| err("open new root", e))?;
    fchdir(&new).map_err(|e| err("chdir", e))?;
    pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    // The old root is now mounted on top of the new one; switch to it to
    // unmount it, without letting the unmount propagate to the host.
    fchdir(&old).map_err(|e| err("chdir to old root", e))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    chdir("/").map_err(|e| err("chdir /", e))?;
    let _ = old.as_raw_fd();
    Ok(())
}

/// `--no-pivot`: move the rootfs over / and chroot into it.
fn chroot_into(rootfs: &Path) -> Result<(), RootfsError> {
    let err = |call, e| RootfsError::sys(call, &rootfs.display().to_string(), e);
    chdir(rootfs).map_err(|e| err("chdir", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| err("move rootfs to /", e))?;
    chroot(".").map_err(|e| err("chroot", e))?;
    chdir("/").map_err(|e| err("chdir /", e))
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(root: &Root, path: &Path) -> Result<(), RootfsError> {
    let what = format!("masked path {}", path.display());
    let target = match root.resolve(path, Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.source == nix::Error::ENOENT => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let st = nix::sys::stat::fstat(&target).map_err(|e| RootfsError::sys("stat", &what, e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        mounts::sys_mount(Some("tmpfs"), &target, Some("tmpfs"), libc::MS_RDONLY, None)
            .map_err(|e| RootfsError::mount(&what, e))
    } else {
        let null = root.resolve(Path::new("/dev/null"), Create::Nothing)?;
        mounts::bind_fd(&null, &target, false).map_err(|e| RootfsError::mount(&what, e))
    }
}

/// Makes `path` a read-only bind of itself.
fn make_readonly(root: &Root, path: &Path) -> Result<(), RootfsError> {
    let what = format!("read-only path {}", path.display());
    let target = match root.resolve(path, Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.source == nix::Error::ENOENT => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    mounts::bind_fd(&target, &target, true).map_err(|e| RootfsError::mount(&what, e))?;
    let target = root.resolve(path, Create::Nothing)?;
    mounts::remount(
        &target,
        libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
        &what,
    )
}

/// The rootfs path of a bundle: root.path, taken from the bundle if relative.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    if p.is_absolute() {
        p
    } else {
        bundle.join(p)
    }
}
