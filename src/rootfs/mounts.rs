//! The `mounts` of config.json, applied in order inside the rootfs.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libc::c_ulong;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::sys::statvfs::fstatvfs;
use oci_spec::runtime::Mount;

use super::mount_options::{self, MountOptions};
use super::resolve::{proc_fd_path, Create, Root};
use super::{cgroup_mount, RootfsError};
use crate::logging;

/// What every mount needs to know about the container.
pub struct Context<'a> {
    pub root: &'a Root,
    pub rootfs: &'a Path,
    pub in_userns: bool,
    pub cgroup_ns: bool,
}

/// Mounts `m`, the `index`-th entry of `mounts`.
pub fn mount_entry(ctx: &Context, index: usize, m: &Mount) -> Result<(), RootfsError> {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = mount_options::parse(m.options().as_deref().unwrap_or_default())
        .map_err(|e| RootfsError::Config(format!("mounts[{index}].options: {e}")))?;
    let dest = destination(index, m);
    let what = format!(
        "mounts[{index}] {} ({})",
        dest.display(),
        if typ.is_empty() { "bind" } else { typ }
    );
    if typ == "cgroup" || typ == "cgroup2" {
        return cgroup_mount::mount_cgroup(ctx, &what, &dest, typ, &opts);
    }
    if opts.is_bind() {
        return bind_mount(ctx, &what, m, &dest, &opts);
    }
    if typ == "proc" || typ == "sysfs" {
        refuse_symlink(ctx.root, &dest, &what)?;
    }
    let target = ctx.root.resolve(&dest, Create::Dir)?;
    let source = m
        .source()
        .as_ref()
        .map_or_else(|| typ.to_string(), |s| s.to_string_lossy().into_owned());
    let flags = opts.flags;
    if opts.tmpcopyup && typ == "tmpfs" {
        return tmpfs_copy_up(ctx, &what, &dest, &target, &source, &opts);
    }
    let res = sys_mount(Some(&source), &target, Some(typ), flags, Some(&opts.data));
    match res {
        Ok(()) => {}
        // Without its own network namespace (or inside a user namespace that
        // does not own it) sysfs cannot be mounted; bind the host's instead,
        // as runc does. mqueue likewise.
        Err(nix::Error::EPERM) if ctx.in_userns && (typ == "sysfs" || typ == "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            let src = nix::fcntl::open(host, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| RootfsError::sys("open", host, e))?;
            bind_fd(&src, &target, true).map_err(|e| RootfsError::mount(&what, e))?;
            let target = ctx.root.resolve(&dest, Create::Nothing)?;
            remount(&target, flags | libc::MS_BIND | libc::MS_REC, &what)?;
            return finish(ctx, &what, &dest, &opts);
        }
        Err(e) => return Err(RootfsError::mount(&what, e)),
    }
    finish(ctx, &what, &dest, &opts)
}

/// The destination as an absolute path; runc takes a relative one from `/`.
fn destination(index: usize, m: &Mount) -> PathBuf {
    let d = m.destination();
    if d.is_absolute() {
        d.clone()
    } else {
        logging::warn(&format!(
            "mounts[{index}].destination {} is relative: taken from the container's /",
            d.display()
        ));
        Path::new("/").join(d)
    }
}

fn bind_mount(
    ctx: &Context,
    what: &str,
    m: &Mount,
    dest: &Path,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let src_path = m
        .source()
        .as_ref()
        .ok_or_else(|| RootfsError::Config(format!("{what}: a bind mount needs a source")))?;
    // Relative sources are taken from the bundle, the create's working directory.
    let src = nix::fcntl::open(
        src_path.as_path(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::sys("open bind source", &src_path.display().to_string(), e))?;
    let is_dir = SFlag::from_bits_truncate(
        fstat(src.as_fd())
            .map_err(|e| RootfsError::sys("stat", &src_path.display().to_string(), e))?
            .st_mode,
    ) & SFlag::S_IFMT
        == SFlag::S_IFDIR;
    let target = ctx
        .root
        .resolve(dest, if is_dir { Create::Dir } else { Create::File })?;
    bind_fd(&src, &target, opts.flags & libc::MS_REC != 0)
        .map_err(|e| RootfsError::mount(what, e))?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra != 0 {
        let target = ctx.root.resolve(dest, Create::Nothing)?;
        remount(&target, opts.flags | libc::MS_BIND, what)?;
    }
    finish(ctx, what, dest, opts)
}

/// Applies propagation and recursive attributes to the mount now at `dest`.
fn finish(ctx: &Context, what: &str, dest: &Path, opts: &MountOptions) -> Result<(), RootfsError> {
    if opts.propagation.is_empty() && opts.attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    // Re-resolve: the earlier fd points at the directory under the new mount.
    let target = ctx.root.resolve(dest, Create::Nothing)?;
    for &p in &opts.propagation {
        sys_mount(None::<&str>, &target, None, p, None).map_err(|e| RootfsError::mount(what, e))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        mount_setattr(&target, opts.attr_set, opts.attr_clr)
            .map_err(|e| RootfsError::mount(what, e))?;
    }
    Ok(())
}

/// Mounts a tmpfs over `dest` and copies what was there into it.
fn tmpfs_copy_up(
    ctx: &Context,
    what: &str,
    dest: &Path,
    target: &OwnedFd,
    source: &str,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let old = openat(
        target.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::sys("open for tmpcopyup", &dest.display().to_string(), e))?;
    sys_mount(
        Some(source),
        target,
        Some("tmpfs"),
        opts.flags & !libc::MS_RDONLY,
        Some(&opts.data),
    )
    .map_err(|e| RootfsError::mount(what, e))?;
    let new = ctx.root.resolve(dest, Create::Nothing)?;
    let new = openat(
        new.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::sys("open", &dest.display().to_string(), e))?;
    super::copy::copy_tree(&old, &new)
        .map_err(|e| RootfsError::sys("tmpcopyup copy", &dest.display().to_string(), e))?;
    if opts.flags & libc::MS_RDONLY != 0 {
        let t = ctx.root.resolve(dest, Create::Nothing)?;
        remount(&t, opts.flags, what)?;
    }
    finish(ctx, what, dest, opts)
}

/// proc and sysfs must not be mounted through a symlink (CVE-2023-27561).
fn refuse_symlink(root: &Root, dest: &Path, what: &str) -> Result<(), RootfsError> {
    let (parent, name) = root.resolve_parent(dest)?;
    match fstatat(
        parent.as_fd(),
        name.as_os_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            Err(RootfsError::Config(format!(
                "{what}: the destination is a symlink in the rootfs; refusing to mount there"
            )))
        }
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => Err(
            RootfsError::Config(format!("{what}: the destination is not a directory")),
        ),
        _ => Ok(()),
    }
}

/// Bind-mounts the object behind `src` onto the one behind `target`.
pub fn bind_fd(src: &impl AsRawFd, target: &impl AsRawFd, recursive: bool) -> nix::Result<()> {
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    mount(
        Some(&proc_fd_path(src)),
        &proc_fd_path(target),
        None::<&str>,
        MsFlags::from_bits_retain(flags),
        None::<&str>,
    )
}

/// mount(2) onto an fd's object.
pub fn sys_mount(
    source: Option<&str>,
    target: &impl AsRawFd,
    typ: Option<&str>,
    flags: c_ulong,
    data: Option<&str>,
) -> nix::Result<()> {
    let data = data.filter(|d| !d.is_empty());
    mount(
        source,
        &proc_fd_path(target),
        typ,
        MsFlags::from_bits_retain(flags),
        data,
    )
}

/// Flags a remount may not drop inside a user namespace: the kernel locks them.
const LOCKABLE: c_ulong = libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_RDONLY;

/// Remounts the mount at `target` with `flags`, keeping locked flags if the
/// kernel insists (EPERM inside a user namespace).
pub fn remount(target: &OwnedFd, flags: c_ulong, what: &str) -> Result<(), RootfsError> {
    let flags = flags | libc::MS_REMOUNT;
    match sys_mount(None, target, None, flags, None) {
        Err(nix::Error::EPERM) => {
            let st = fstatvfs(target.as_fd()).map_err(|e| RootfsError::mount(what, e))?;
            let locked = st.flags().bits() as c_ulong & LOCKABLE;
            sys_mount(None, target, None, flags | locked, None)
                .map_err(|e| RootfsError::mount(what, e))
        }
        other => other.map_err(|e| RootfsError::mount(what, e)),
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the whole tree at `target`.
pub fn mount_setattr(target: &impl AsRawFd, set: u64, clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let empty: &CStr = c"";
    // SAFETY: the path is a valid C string, attr is a live repr(C) struct and
    // its size is passed; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            target.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::Error::result(r).map(drop)
}
