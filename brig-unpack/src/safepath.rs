//! Path resolution that cannot leave a root directory.
//!
//! Every lookup is done relative to a directory fd with `openat2(2)` and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so `..` and symlinks (absolute or
//! relative) are resolved as if the rootfs were `/`. On kernels without openat2
//! the same semantics are emulated by walking one component at a time with
//! `O_NOFOLLOW` and expanding symlinks by hand. The final component of a path is
//! always handled by the caller with an `*at` call that does not follow it.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{IoContext, Result};

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
const MAX_SYMLINKS: usize = 40;

/// Lexically cleans a tar entry name into a root-relative path: strips leading
/// `/` and `./`, folds `a/../b`, and refuses any `..` that would climb above the
/// root. The empty result names the root itself.
pub fn clean(raw: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("path climbs out of the rootfs with '..'");
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
}

/// Splits a cleaned path into (parent, final component).
pub fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// Shows a byte path for messages.
pub fn show(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Hook run before [`Root::mkdir_all`] makes a directory: (parent path, parent fd, new path).
pub type BeforeCreate<'a> = dyn FnMut(&[u8], BorrowedFd<'_>, &[u8]) + 'a;

/// A directory that paths are resolved inside of.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    emulate: bool,
}

impl Root {
    /// Opens `path` as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .at(path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            emulate: false,
        })
    }

    /// Forces the component-walking fallback (tests compare it with openat2).
    pub fn emulated(mut self) -> Root {
        self.emulate = true;
        self
    }

    /// The root's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's directory fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` resolved inside the root; follows a final symlink (in-root)
    /// unless `flags` has `O_NOFOLLOW`.
    pub fn open_at(&self, rel: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        if !self.emulate && !NO_OPENAT2.load(Ordering::Relaxed) {
            let how = OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match openat2(self.fd.as_fd(), os(rel), how) {
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // EAGAIN: a concurrent rename raced the kernel's check; retry once by hand.
                Err(Errno::EAGAIN) => {}
                r => return r,
            }
        }
        self.walk(rel, flags)
    }

    fn walk(&self, rel: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut queue: VecDeque<Vec<u8>> = rel.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let last = queue.iter().all(|c| c.is_empty() || c == b".");
            let cur = stack.last().map(|f| f.as_fd()).unwrap_or(self.fd.as_fd());
            let st = fstatat(cur, os(&c), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK && !(last && flags.contains(OFlag::O_NOFOLLOW)) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = readlinkat(cur, os(&c))?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    stack.clear();
                }
                for part in target.split(|b| *b == b'/').rev() {
                    queue.push_front(part.to_vec());
                }
                continue;
            }
            if last {
                return openat(
                    cur,
                    os(&c),
                    flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
            }
            if kind != SFlag::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            let fd = openat(
                cur,
                os(&c),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            stack.push(fd);
        }
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(self.fd.as_fd());
        openat(cur, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
    }

    /// Opens directory `rel` as an `O_PATH` fd for use with `*at` calls.
    pub fn dir(&self, rel: &[u8]) -> nix::Result<OwnedFd> {
        self.open_at(rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
    }

    /// Opens directory `rel`, creating missing directories (mode 0755, owned by
    /// `owner`) the way `mkdir -p` would, all inside the root; the paths it
    /// created are appended to `created`.
    pub fn mkdir_all(
        &self,
        rel: &[u8],
        owner: (u32, u32),
        before_create: &mut BeforeCreate<'_>,
    ) -> nix::Result<OwnedFd> {
        match self.dir(rel) {
            Err(Errno::ENOENT) if !rel.is_empty() => {}
            r => return r,
        }
        let (parent, name) = split(rel);
        let pfd = self.mkdir_all(parent, owner, before_create)?;
        before_create(parent, pfd.as_fd(), rel);
        match mkdirat(&pfd, os(name), Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                // An implicit parent must still belong to the container's root under an id map.
                let _ = nix::unistd::fchownat(
                    &pfd,
                    os(name),
                    Some(owner.0.into()),
                    Some(owner.1.into()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                );
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        // Re-resolve from the root: `name` may be a symlink to a directory that exists.
        self.dir(rel)
    }
}

/// Removes `name` in `dir` and, for a directory, everything under it, never
/// following symlinks.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let st = match fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r?,
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let fd = openat(
            dir,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        clear_dir(fd.as_fd(), &|_| true)?;
        unlinkat(dir, os(name), UnlinkatFlags::RemoveDir)
    } else {
        unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir)
    }
}

/// Removes the entries of directory `fd` for which `remove(name)` is true.
pub fn clear_dir(fd: BorrowedFd<'_>, remove: &dyn Fn(&[u8]) -> bool) -> nix::Result<()> {
    let names = list_dir(fd)?;
    for n in names {
        if remove(&n) {
            remove_all_at(fd, &n)?;
        }
    }
    Ok(())
}

/// Names in directory `fd`, without `.` and `..`.
pub fn list_dir(fd: BorrowedFd<'_>) -> nix::Result<Vec<Vec<u8>>> {
    let dup = openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Kind bits of a stat result.
pub fn kind_of(st: &nix::sys::stat::FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// `fstat` of an fd as a convenience for callers holding one.
pub fn stat_fd(fd: BorrowedFd<'_>) -> nix::Result<nix::sys::stat::FileStat> {
    fstat(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean(b"./etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(clean(b"/etc//passwd/").unwrap(), b"etc/passwd");
        assert_eq!(clean(b"a/b/../c").unwrap(), b"a/c");
        assert_eq!(clean(b"./").unwrap(), b"");
        assert!(clean(b"../etc").is_err());
        assert!(clean(b"a/../../etc").is_err());
        assert!(clean(b"a\0b").is_err());
    }

    #[test]
    fn split_paths() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
    }

    fn tmp() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "brig-unpack-safepath-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn symlinks_stay_inside_for_both_resolvers() {
        let base = tmp();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), b"host").unwrap();
        std::fs::write(root.join("usr/lib/secret"), b"inside").unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../usr/lib", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("esc")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        for r in [
            Root::open(&root).unwrap(),
            Root::open(&root).unwrap().emulated(),
        ] {
            for p in [
                &b"abs/secret"[..],
                b"rel/secret",
                b"usr/lib/../lib/secret",
                b"../../usr/lib/secret",
            ] {
                let fd = r.open_at(p, OFlag::O_RDONLY).unwrap();
                let mut s = String::new();
                use std::io::Read;
                std::fs::File::from(fd).read_to_string(&mut s).unwrap();
                assert_eq!(s, "inside", "{}", show(p));
            }
            // "../outside" from the root is "/outside", which does not exist inside.
            assert_eq!(
                r.open_at(b"esc/secret", OFlag::O_RDONLY).unwrap_err(),
                Errno::ENOENT
            );
            assert!(r.open_at(b"loop/x", OFlag::O_RDONLY).is_err());
            r.mkdir_all(b"abs/new/dir", (0, 0), &mut |_, _, _| {})
                .unwrap();
            assert!(root.join("usr/lib/new/dir").is_dir());
            // A dangling in-root target is an error, and nothing appears outside.
            assert!(r.mkdir_all(b"esc/made", (0, 0), &mut |_, _, _| {}).is_err());
            assert!(!base.join("outside/made").exists());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
