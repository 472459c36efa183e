//! Path resolution inside the rootfs that never leaves it.
//!
//! Every component is opened with O_NOFOLLOW relative to the fd of its
//! parent; symlinks are read and spliced in by hand, with absolute targets
//! and `..` clamped at the rootfs. The result is an O_PATH fd, and mounts
//! land on that fd (through /proc/self/fd), never on a path that could be
//! swapped between check and use (CVE-2021-30465).
//!
//! Where the kernel has openat2 (5.6+), RESOLVE_IN_ROOT does the same walk
//! in one syscall; any path it does not resolve (missing components to
//! create, magic links, an older kernel) goes to the walk above, which has
//! the last word.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Longest chain of symlinks followed, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// What to create when the path's last component is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Fail with ENOENT.
    Nothing,
    /// A directory (and missing parents).
    Dir,
    /// An empty regular file (and missing parent directories).
    File,
}

/// A resolution failure, naming the path asked for.
#[derive(Debug, thiserror::Error)]
#[error("resolve {path} inside the rootfs: {source}")]
pub struct ResolveError {
    pub path: PathBuf,
    pub source: nix::Error,
}

/// A directory treated as `/` for resolution.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `dir` as the root.
    pub fn open(dir: &Path) -> Result<Root, ResolveError> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| ResolveError {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Root { fd })
    }

    /// The root's own fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resolves `path` (absolute or not, always taken from the root) to an
    /// O_PATH fd, creating the last component (and parents) as `create` says.
    pub fn resolve(&self, path: &Path, create: Create) -> Result<OwnedFd, ResolveError> {
        let root = self.fd.as_fd();
        in_root(root, path, create)
            .unwrap_or_else(|| walk(root, path, create, true))
            .map_err(|source| ResolveError {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Resolves all but the last component and returns (parent fd, last name);
    /// the last component itself is not followed, so it may be a symlink.
    pub fn resolve_parent(&self, path: &Path) -> Result<(OwnedFd, OsString), ResolveError> {
        let err = |source| ResolveError {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .ok_or_else(|| err(nix::Error::EINVAL))?
            .to_os_string();
        let parent = path.parent().unwrap_or(Path::new("/"));
        let fd = self
            .resolve(parent, Create::Dir)
            .map_err(|e| err(e.source))?;
        Ok((fd, name))
    }
}

/// The kernel's own confined walk: `path` resolved with `root` as `/`, as
/// an O_PATH fd. A missing last component is created when its parent
/// resolves. None when openat2 cannot settle it; the caller then walks.
/// A missing path with nothing to create is settled: ENOENT, as the walk
/// would find (a masked path absent from this kernel's /proc, say).
fn in_root(root: BorrowedFd<'_>, path: &Path, create: Create) -> Option<nix::Result<OwnedFd>> {
    let open = |p: &Path| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(root, p, how)
    };
    match open(path) {
        Ok(fd) => Some(Ok(fd)),
        Err(nix::Error::ENOENT) if create == Create::Nothing => Some(Err(nix::Error::ENOENT)),
        Err(nix::Error::ENOENT) => {
            let name = path.file_name()?;
            let parent = open(path.parent()?).ok()?;
            make(parent.as_fd(), name, create).ok()?;
            open(path).ok().map(Ok)
        }
        Err(_) => None,
    }
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn walk(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Create,
    follow_last: bool,
) -> nix::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut todo = components(path);
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let dir = stack.last().map_or(root, |f| f.as_fd());
        let last = todo.is_empty();
        let fd = match open_nofollow(dir, &name) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) if create != Create::Nothing => {
                make(dir, &name, if last { create } else { Create::Dir })?;
                // Go round again: the entry now exists (or another process
                // made something else there, which is then checked as usual).
                todo.push_front(name);
                continue;
            }
            Err(e) => return Err(e),
        };
        let kind = SFlag::from_bits_truncate(fstat(fd.as_fd())?.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK && (follow_last || !last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(nix::Error::ELOOP);
            }
            let target = readlinkat(fd.as_fd(), "")?;
            let target = Path::new(&target);
            if target.is_absolute() {
                stack.clear();
            }
            for c in components(target).into_iter().rev() {
                todo.push_front(c);
            }
            continue;
        }
        if !last && kind != SFlag::S_IFDIR {
            return Err(nix::Error::ENOTDIR);
        }
        stack.push(fd);
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => nix::unistd::dup(root),
    }
}

fn make(dir: BorrowedFd<'_>, name: &OsStr, what: Create) -> nix::Result<()> {
    let res = match what {
        Create::Dir => mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
        Create::File => openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        Create::Nothing => Err(nix::Error::ENOENT),
    };
    match res {
        Err(nix::Error::EEXIST) => Ok(()),
        other => other,
    }
}

/// The magic-link path through which a syscall reaches the object behind `fd`.
pub fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The path `fd` refers to, as the kernel reports it (for error messages).
pub fn describe(fd: &impl AsRawFd) -> String {
    std::fs::read_link(proc_fd_path(fd))
        .map(|p| p.as_os_str().as_bytes().escape_ascii().to_string())
        .unwrap_or_else(|_| format!("fd {}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("brig-resolve-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let base = tempdir("inside");
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("etc/hosts"), "in").unwrap();
        fs::write(outside.join("hosts"), "out").unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../outside", root.join("rel")).unwrap();
        let r = Root::open(&root).unwrap();

        // An absolute link to the host's `outside` resolves to root/outside.
        let fd = r.resolve(Path::new("/abs"), Create::Dir).unwrap();
        assert!(describe(&fd).starts_with(root.to_str().unwrap()));
        assert!(root.join(outside.strip_prefix("/").unwrap()).is_dir());
        // `..` cannot climb above the root.
        let fd = r.resolve(Path::new("/rel"), Create::Dir).unwrap();
        assert_eq!(describe(&fd), root.join("outside").to_str().unwrap());
        let fd = r
            .resolve(Path::new("../../etc/hosts"), Create::Nothing)
            .unwrap();
        assert_eq!(describe(&fd), root.join("etc/hosts").to_str().unwrap());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_kernel_walk_and_ours_agree() {
        let base = tempdir("agree");
        let root = base.join("root");
        fs::create_dir_all(root.join("etc/sub")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(root.join("etc/hosts"), "in").unwrap();
        symlink("/etc/../../etc", root.join("abs")).unwrap();
        symlink("../../../outside", root.join("etc/rel")).unwrap();
        symlink("/etc/sub", root.join("etc/sublink")).unwrap();
        fs::create_dir_all(root.join("outside")).unwrap();
        let r = Root::open(&root).unwrap();
        for p in [
            "/",
            "/etc/hosts",
            "etc/sub/../hosts",
            "../../etc",
            "/abs",
            "/etc/rel",
            "/etc/sublink/..",
            "/etc/sublink",
        ] {
            let ours = walk(r.fd(), Path::new(p), Create::Nothing, true).unwrap();
            let kernel = in_root(r.fd(), Path::new(p), Create::Nothing)
                .unwrap_or_else(|| panic!("openat2 did not resolve {p}"))
                .unwrap();
            assert_eq!(describe(&ours), describe(&kernel), "{p}");
        }
        // A missing last component is made in its parent; deeper gaps are left to the walk.
        let fd = in_root(r.fd(), Path::new("/etc/sublink/new"), Create::Dir);
        assert_eq!(
            describe(&fd.unwrap().unwrap()),
            root.join("etc/sub/new").to_str().unwrap()
        );
        assert!(in_root(r.fd(), Path::new("/x/y"), Create::Dir).is_none());
        let missing = in_root(r.fd(), Path::new("/missing"), Create::Nothing);
        assert_eq!(missing.unwrap().unwrap_err(), nix::Error::ENOENT);
        let walked = walk(r.fd(), Path::new("/missing"), Create::Nothing, true);
        assert_eq!(walked.unwrap_err(), nix::Error::ENOENT);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn creates_files_and_dirs_and_detects_loops() {
        let base = tempdir("create");
        let r = Root::open(&base).unwrap();
        r.resolve(Path::new("/a/b/c"), Create::Dir).unwrap();
        assert!(base.join("a/b/c").is_dir());
        r.resolve(Path::new("/a/f"), Create::File).unwrap();
        assert!(base.join("a/f").is_file());
        let e = r.resolve(Path::new("/a/f/x"), Create::Dir).unwrap_err();
        assert_eq!(e.source, nix::Error::ENOTDIR);
        symlink("loop", base.join("loop")).unwrap();
        let e = r.resolve(Path::new("/loop"), Create::Nothing).unwrap_err();
        assert_eq!(e.source, nix::Error::ELOOP);
        fs::remove_dir_all(&base).unwrap();
    }
}
