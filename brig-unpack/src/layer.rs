//! Applying one layer tar to a directory: every entry type, ownership, modes,
//! mtimes, xattrs, and whiteouts (applied in place for a flat rootfs, or
//! converted to overlayfs form for the layer store).
//!
//! Every path is resolved with [`Root`], so nothing a tar says can reach
//! outside the directory being written.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat,
    FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, UnlinkatFlags};
use tar::EntryType;

use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::safepath::{self, clean, kind_of, remove_all_at, show, split, Root};

/// What to do with whiteout entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Delete what they name (flat rootfs).
    Apply,
    /// Turn them into overlayfs whiteouts: a 0/0 char device and the opaque xattr.
    Overlay,
}

/// How to apply a layer.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
    /// Shift of file uids (container → host).
    pub uid_map: IdMap,
    /// Shift of file gids (container → host).
    pub gid_map: IdMap,
    /// Running without privilege: ownership, devices and privileged xattrs that
    /// cannot be set are skipped with a warning instead of failing.
    pub rootless: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: Whiteouts::Apply,
            uid_map: IdMap::default(),
            gid_map: IdMap::default(),
            rootless: !nix::unistd::geteuid().is_root(),
        }
    }
}

/// Counts from applying a layer.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Directories created only because an entry needed a parent (no entry of
    /// their own); the layer store later copies their metadata from below.
    pub implicit_dirs: Vec<Vec<u8>>,
    /// Whether the tar had an entry for the root directory itself.
    pub root_explicit: bool,
}

const OPAQUE: &[u8] = b".wh..wh..opq";
const WH_PREFIX: &[u8] = b".wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

type Times = (TimeSpec, TimeSpec);

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    atime: TimeSpec,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

fn parse_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nanos = format!("{digits:0<9}").parse().ok()?;
        if secs < 0 {
            nanos = -nanos;
        }
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Sets one xattr on an open fd.
fn fset_xattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fd is a live descriptor, cname is NUL-terminated and value is a
    // valid buffer of value.len() bytes for the duration of the call.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets one xattr on `name` inside directory `dir` without following it, by
/// naming it through the already-resolved directory's /proc fd link.
fn lset_xattr_at(dir: BorrowedFd<'_>, name: &[u8], xname: &[u8], value: &[u8]) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let cpath = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cname = CString::new(xname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and live across the call; value
    // is a valid buffer of value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn save_times(saved: &mut HashMap<Vec<u8>, Times>, rel: &[u8], fd: BorrowedFd<'_>) {
    if saved.contains_key(rel) {
        return;
    }
    if let Ok(st) = fstat(fd) {
        let t = (
            TimeSpec::new(st.st_atime, st.st_atime_nsec),
            TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        );
        saved.insert(rel.to_vec(), t);
    }
}

/// Implicitly creating a parent changes the times of the directory it is made
/// in; unlike umoci, those are restored too, so the result does not depend on
/// the wall clock.
fn note_created(
    saved: &mut HashMap<Vec<u8>, Times>,
    implicit: &mut Vec<Vec<u8>>,
    parent: &[u8],
    fd: BorrowedFd<'_>,
    new: &[u8],
) {
    save_times(saved, parent, fd);
    implicit.push(new.to_vec());
}

/// Applies layer tars to one directory, one entry at a time.
pub struct Applier<'a> {
    root: &'a Root,
    layer: String,
    opts: &'a ApplyOptions,
    seen: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, Times)>,
    saved_times: HashMap<Vec<u8>, Times>,
    buf: Vec<u8>,
    root_owner: (u32, u32),
    stats: LayerStats,
}

impl<'a> Applier<'a> {
    /// Prepares to apply layer `layer` (a name for errors) into `root`.
    pub fn new(root: &'a Root, layer: &str, opts: &'a ApplyOptions) -> Result<Self> {
        let root_owner = (
            opts.uid_map.to_host(0).unwrap_or(0),
            opts.gid_map.to_host(0).unwrap_or(0),
        );
        Ok(Applier {
            root,
            layer: layer.to_string(),
            opts,
            seen: HashSet::new(),
            dir_times: Vec::new(),
            saved_times: HashMap::new(),
            buf: vec![0; 256 * 1024],
            root_owner,
            stats: LayerStats::default(),
        })
    }

    fn entry_err(&self, entry: &[u8], reason: impl Into<String>) -> Error {
        Error::Entry {
            layer: self.layer.clone(),
            entry: show(entry),
            reason: reason.into(),
        }
    }

    fn io_err(&self, entry: &[u8], e: impl Into<io::Error>) -> Error {
        Error::EntryIo {
            layer: self.layer.clone(),
            entry: show(entry),
            source: e.into(),
        }
    }

    fn warn(&self, entry: &[u8], what: &str) {
        eprintln!(
            "brig-unpack: warning: layer {}: entry {:?}: {what}",
            self.layer,
            show(entry)
        );
    }

    /// Applies every entry of the tar stream `reader`.
    pub fn apply<R: Read>(mut self, reader: R) -> Result<LayerStats> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.io_err(b"", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::LayerIo {
                layer: self.layer.clone(),
                source: e,
            })?;
            self.entry(entry)?;
            self.stats.entries += 1;
        }
        // Implicit parents have no time of their own in the image; the epoch
        // (as umoci gives a rootfs root) keeps the result independent of the clock.
        let zero = TimeSpec::new(0, 0);
        for p in &self.stats.implicit_dirs {
            self.saved_times.insert(p.clone(), (zero, zero));
        }
        self.finish_times();
        let explicit: HashSet<&Vec<u8>> = self.dir_times.iter().map(|(p, _)| p).collect();
        self.stats.root_explicit = explicit.contains(&Vec::new());
        let implicit = std::mem::take(&mut self.stats.implicit_dirs);
        self.stats.implicit_dirs = implicit
            .into_iter()
            .filter(|p| !explicit.contains(p) && self.seen_dir_ok(p))
            .collect();
        Ok(self.stats)
    }

    fn seen_dir_ok(&self, p: &[u8]) -> bool {
        !self.seen.contains(p)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
        let h = entry.header();
        let uid = h.uid().map_err(|e| self.io_err(raw, e))?;
        let gid = h.gid().map_err(|e| self.io_err(raw, e))?;
        let mode = h.mode().map_err(|e| self.io_err(raw, e))? & 0o7777;
        let mtime = h.mtime().map_err(|e| self.io_err(raw, e))?;
        let mut mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| self.io_err(raw, e))? {
            for ext in pax {
                let ext = ext.map_err(|e| self.io_err(raw, e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    mtime = parse_time(ext.value_bytes()).unwrap_or(mtime);
                } else if key == b"atime" {
                    atime = parse_time(ext.value_bytes());
                }
            }
        }
        for (name, _) in &xattrs {
            // These would steer overlayfs (redirects, metacopy, opacity) from inside an image.
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                return Err(self.entry_err(
                    raw,
                    format!("refusing overlayfs control xattr {}", show(name)),
                ));
            }
        }
        let uid = u32::try_from(uid)
            .map_err(|_| self.entry_err(raw, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid)
            .map_err(|_| self.entry_err(raw, format!("gid {gid} out of range")))?;
        let uid = self
            .opts
            .uid_map
            .to_host(uid)
            .map_err(|e| self.entry_err(raw, e.to_string()))?;
        let gid = self
            .opts
            .gid_map
            .to_host(gid)
            .map_err(|e| self.entry_err(raw, e.to_string()))?;
        Ok(Meta {
            uid,
            gid,
            mode,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    /// Remembers a directory's times before this layer first changes its
    /// contents, so they can be put back (as umoci does) at the end of the layer.
    fn save_times(&mut self, rel: &[u8], fd: BorrowedFd<'_>) {
        save_times(&mut self.saved_times, rel, fd);
    }

    fn finish_times(&mut self) {
        let explicit: HashSet<&Vec<u8>> = self.dir_times.iter().map(|(p, _)| p).collect();
        // Saved parents were reached by resolving symlinks in-root, so they are
        // reopened the same way; explicit entries are the named directory itself.
        let mut all: Vec<(Vec<u8>, Times, bool)> = self
            .saved_times
            .iter()
            .filter(|(p, _)| !explicit.contains(p))
            .map(|(p, t)| (p.clone(), *t, true))
            .collect();
        all.extend(self.dir_times.iter().map(|(p, t)| (p.clone(), *t, false)));
        for (rel, (atime, mtime), follow) in all {
            let flags = OFlag::O_RDONLY
                | OFlag::O_DIRECTORY
                | if follow {
                    OFlag::empty()
                } else {
                    OFlag::O_NOFOLLOW
                };
            // The directory may have been removed by a later entry; that is fine.
            if let Ok(fd) = self.root.open_at(&rel, flags) {
                let _ = futimens(&fd, &atime, &mtime);
            }
        }
    }

    /// Drops xattrs of a re-stated directory that its new entry does not list.
    fn prune_xattrs(
        &self,
        fd: BorrowedFd<'_>,
        raw: &[u8],
        keep: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: fd is live and buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return Ok(());
        }
        buf.truncate(n as usize);
        for name in buf.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            // SELinux labels belong to the host policy, not to the image.
            if name == b"security.selinux" || keep.iter().any(|(k, _)| k == name) {
                continue;
            }
            let cname = CString::new(name).map_err(|_| self.entry_err(raw, "bad xattr name"))?;
            // SAFETY: fd is live and cname is NUL-terminated.
            let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), cname.as_ptr()) };
            if r != 0 && !self.opts.rootless {
                return Err(self.entry_err(
                    raw,
                    format!(
                        "removing xattr {}: {}",
                        show(name),
                        io::Error::last_os_error()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn chown_at(&self, dir: BorrowedFd<'_>, name: &[u8], raw: &[u8], m: &Meta) -> Result<()> {
        match fchownat(
            dir,
            os(name),
            Some(m.uid.into()),
            Some(m.gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EPERM | Errno::EINVAL) if self.opts.rootless => Ok(()),
            Err(e) => Err(self.io_err(raw, e)),
        }
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, raw: &[u8], m: &Meta) -> Result<()> {
        match fchown(fd, Some(m.uid.into()), Some(m.gid.into())) {
            Ok(()) => Ok(()),
            Err(Errno::EPERM | Errno::EINVAL) if self.opts.rootless => Ok(()),
            Err(e) => Err(self.io_err(raw, e)),
        }
    }

    fn xattr_result(&self, raw: &[u8], name: &[u8], r: io::Result<()>) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                self.warn(
                    raw,
                    &format!("xattr {} not supported here, skipped", show(name)),
                );
                Ok(())
            }
            Err(e) if self.opts.rootless && e.raw_os_error() == Some(libc::EPERM) => {
                self.warn(
                    raw,
                    &format!("xattr {} needs privilege, skipped", show(name)),
                );
                Ok(())
            }
            Err(e) => Err(self.entry_err(raw, format!("setting xattr {}: {e}", show(name)))),
        }
    }

    /// Ownership, then mode (chown clears setuid bits), then xattrs (chown also
    /// clears security.capability), on an open file or directory.
    fn finish_fd(&self, fd: BorrowedFd<'_>, raw: &[u8], m: &Meta) -> Result<()> {
        self.chown_fd(fd, raw, m)?;
        fchmod(fd, Mode::from_bits_truncate(m.mode)).map_err(|e| self.io_err(raw, e))?;
        for (n, v) in &m.xattrs {
            self.xattr_result(raw, n, fset_xattr(fd, n, v))?;
        }
        Ok(())
    }

    fn finish_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        raw: &[u8],
        m: &Meta,
        chmod: bool,
    ) -> Result<()> {
        self.chown_at(dir, name, raw, m)?;
        if chmod {
            // Only called on nodes just created by mknodat, never on a symlink.
            fchmodat(
                dir,
                os(name),
                Mode::from_bits_truncate(m.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| self.io_err(raw, e))?;
        }
        for (n, v) in &m.xattrs {
            self.xattr_result(raw, n, lset_xattr_at(dir, name, n, v))?;
        }
        utimensat(
            dir,
            os(name),
            &m.atime,
            &m.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io_err(raw, e))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let rel = clean(&raw).map_err(|r| self.entry_err(&raw, r))?;
        let (parent, name) = split(&rel);
        let (parent, name) = (parent.to_vec(), name.to_vec());

        if name.starts_with(WH_PREFIX) {
            if name == OPAQUE {
                return self.opaque(&raw, &parent);
            }
            if name.starts_with(b".wh..wh.") {
                // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs) carries no meaning here.
                return Ok(());
            }
            return self.whiteout(&raw, &parent, &name[WH_PREFIX.len()..]);
        }

        let m = self.meta(&mut entry, &raw)?;
        if rel.is_empty() {
            if !kind.is_dir() {
                return Err(self.entry_err(
                    &raw,
                    "a non-directory entry cannot replace the rootfs itself",
                ));
            }
            let fd = self
                .root
                .open_at(b"", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| self.io_err(&raw, e))?;
            self.finish_fd(fd.as_fd(), &raw, &m)?;
            self.dir_times.push((rel, (m.atime, m.mtime)));
            return Ok(());
        }

        let link_target = if kind.is_hard_link() {
            let t = entry
                .link_name_bytes()
                .ok_or_else(|| self.entry_err(&raw, "hardlink without a target"))?
                .into_owned();
            let t = clean(&t).map_err(|r| self.entry_err(&raw, format!("hardlink target: {r}")))?;
            if t == rel {
                return Ok(());
            }
            Some(t)
        } else {
            None
        };

        let pfd = self
            .root
            .mkdir_all(&parent, self.root_owner, &mut |p, fd, new| {
                note_created(
                    &mut self.saved_times,
                    &mut self.stats.implicit_dirs,
                    p,
                    fd,
                    new,
                )
            })
            .map_err(|e| match e {
                Errno::ENOTDIR => {
                    self.entry_err(&raw, "a parent path component is not a directory")
                }
                e => self.io_err(&raw, e),
            })?;
        self.save_times(&parent, pfd.as_fd());
        self.seen.insert(rel.clone());

        // Replace whatever is there, except that a directory entry keeps an existing directory.
        match fstatat(&pfd, os(&name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let is_dir = kind_of(&st) == SFlag::S_IFDIR;
                if !(kind.is_dir() && is_dir) {
                    if is_dir {
                        remove_all_at(pfd.as_fd(), &name).map_err(|e| self.io_err(&raw, e))?;
                    } else {
                        unlinkat(&pfd, os(&name), UnlinkatFlags::NoRemoveDir)
                            .map_err(|e| self.io_err(&raw, e))?;
                    }
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.io_err(&raw, e)),
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = openat(
                    &pfd,
                    os(&name),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io_err(&raw, e))?;
                let mut file = File::from(fd);
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(Error::LayerIo {
                                layer: self.layer.clone(),
                                source: e,
                            })
                        }
                    };
                    file.write_all(&self.buf[..n])
                        .map_err(|e| self.io_err(&raw, e))?;
                    self.stats.bytes += n as u64;
                }
                self.finish_fd(file.as_fd(), &raw, &m)?;
                futimens(&file, &m.atime, &m.mtime).map_err(|e| self.io_err(&raw, e))?;
            }
            EntryType::Directory => {
                match mkdirat(&pfd, os(&name), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.io_err(&raw, e)),
                }
                let fd = openat(
                    &pfd,
                    os(&name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io_err(&raw, e))?;
                self.prune_xattrs(fd.as_fd(), &raw, &m.xattrs)?;
                self.finish_fd(fd.as_fd(), &raw, &m)?;
                self.dir_times.push((rel, (m.atime, m.mtime)));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.entry_err(&raw, "symlink without a target"))?
                    .into_owned();
                if target.contains(&0) {
                    return Err(self.entry_err(&raw, "symlink target contains a NUL byte"));
                }
                // The target is stored verbatim: it is only ever resolved inside the rootfs.
                symlinkat(os(&target), &pfd, os(&name)).map_err(|e| self.io_err(&raw, e))?;
                self.finish_at(pfd.as_fd(), &name, &raw, &m, false)?;
            }
            EntryType::Link => {
                let target = link_target.unwrap_or_default();
                let (tparent, tname) = split(&target);
                let tdir = self.root.dir(tparent).map_err(|e| {
                    self.entry_err(
                        &raw,
                        format!(
                            "hardlink target {:?}: {}",
                            show(&target),
                            io::Error::from(e)
                        ),
                    )
                })?;
                let st = fstatat(&tdir, os(tname), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| {
                    let why = if e == Errno::ENOENT && self.opts.whiteouts == Whiteouts::Overlay {
                        "does not exist in this layer (links into lower layers are not supported by the layer store; use --flat)".to_string()
                    } else {
                        io::Error::from(e).to_string()
                    };
                    self.entry_err(&raw, format!("hardlink target {:?} {why}", show(&target)))
                })?;
                if kind_of(&st) == SFlag::S_IFDIR {
                    return Err(self.entry_err(
                        &raw,
                        format!("hardlink target {:?} is a directory", show(&target)),
                    ));
                }
                // Flags 0: a symlink target is linked itself, never followed out of the root.
                linkat(&tdir, os(tname), &pfd, os(&name), AtFlags::empty())
                    .map_err(|e| self.io_err(&raw, e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let h = entry.header();
                        let major = h
                            .device_major()
                            .map_err(|e| self.io_err(&raw, e))?
                            .unwrap_or(0);
                        let minor = h
                            .device_minor()
                            .map_err(|e| self.io_err(&raw, e))?
                            .unwrap_or(0);
                        let f = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (f, makedev(major.into(), minor.into()))
                    }
                };
                match mknodat(&pfd, os(&name), sflag, Mode::from_bits_truncate(0o600), dev) {
                    Ok(()) => self.finish_at(pfd.as_fd(), &name, &raw, &m, true)?,
                    Err(Errno::EPERM) if self.opts.rootless && sflag != SFlag::S_IFIFO => {
                        self.warn(
                            &raw,
                            "device nodes cannot be created without privilege, skipped",
                        );
                    }
                    Err(e) => return Err(self.io_err(&raw, e)),
                }
            }
            other => {
                return Err(self.entry_err(&raw, format!("unsupported tar entry type {:?}", other)));
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, raw: &[u8], parent: &[u8], target: &[u8]) -> Result<()> {
        if target.is_empty() || target == b"." || target == b".." {
            return Err(self.entry_err(raw, "malformed whiteout name"));
        }
        let path = join(parent, target);
        if self.seen.contains(&path) {
            // Whiteouts hide lower layers only, never entries of their own layer.
            return Ok(());
        }
        match self.opts.whiteouts {
            Whiteouts::Apply => {
                let pfd = match self.root.dir(parent) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(Errno::ENOTDIR) => return Ok(()),
                    Err(e) => return Err(self.io_err(raw, e)),
                };
                self.save_times(parent, pfd.as_fd());
                remove_all_at(pfd.as_fd(), target).map_err(|e| self.io_err(raw, e))
            }
            Whiteouts::Overlay => {
                let pfd = self
                    .root
                    .mkdir_all(parent, self.root_owner, &mut |p, fd, new| {
                        note_created(
                            &mut self.saved_times,
                            &mut self.stats.implicit_dirs,
                            p,
                            fd,
                            new,
                        )
                    })
                    .map_err(|e| self.io_err(raw, e))?;
                self.save_times(parent, pfd.as_fd());
                remove_all_at(pfd.as_fd(), target).map_err(|e| self.io_err(raw, e))?;
                mknodat(
                    &pfd,
                    os(target),
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    makedev(0, 0),
                )
                .map_err(|e| self.io_err(raw, e))
            }
        }
    }

    fn opaque(&mut self, raw: &[u8], dir: &[u8]) -> Result<()> {
        match self.opts.whiteouts {
            Whiteouts::Apply => {
                let fd = match self.root.open_at(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
                    Err(e) => return Err(self.io_err(raw, e)),
                };
                self.save_times(dir, fd.as_fd());
                self.clear_lower(fd.as_fd(), dir)
                    .map_err(|e| self.io_err(raw, e))
            }
            Whiteouts::Overlay => {
                let pfd = self
                    .root
                    .mkdir_all(dir, self.root_owner, &mut |p, fd, new| {
                        note_created(
                            &mut self.saved_times,
                            &mut self.stats.implicit_dirs,
                            p,
                            fd,
                            new,
                        )
                    })
                    .map_err(|e| self.io_err(raw, e))?;
                let fd = openat(
                    &pfd,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io_err(raw, e))?;
                fset_xattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR.as_bytes(), b"y").map_err(|e| {
                    self.entry_err(raw, format!("setting {OVERLAY_OPAQUE_XATTR}: {e}"))
                })
            }
        }
    }

    /// Empties a directory of everything that did not come from this layer.
    fn clear_lower(&self, fd: BorrowedFd<'_>, dir: &[u8]) -> nix::Result<()> {
        for child in safepath::list_dir(fd)? {
            let path = join(dir, &child);
            if !self.seen.contains(&path) {
                remove_all_at(fd, &child)?;
                continue;
            }
            let st = fstatat(fd, os(&child), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if kind_of(&st) == SFlag::S_IFDIR {
                let sub = openat(
                    fd,
                    os(&child),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                self.clear_lower(sub.as_fd(), &path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_time(b"1700000000.5").unwrap(),
            TimeSpec::new(1700000000, 500_000_000)
        );
        assert_eq!(parse_time(b"12").unwrap(), TimeSpec::new(12, 0));
        assert_eq!(
            parse_time(b"1.1234567891").unwrap(),
            TimeSpec::new(1, 123_456_789)
        );
        assert!(parse_time(b"x").is_none());
    }

    #[test]
    fn joins() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
    }
}
