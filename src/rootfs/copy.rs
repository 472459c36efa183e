//! Copying a directory tree between two directory fds (for `tmpcopyup`).

use std::os::fd::{AsFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, FchmodatFlags, Mode};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

/// Copies the contents of `from` into `to`: files, directories and symlinks,
/// with their modes and owners. Other file types are skipped.
pub fn copy_tree(from: &OwnedFd, to: &OwnedFd) -> nix::Result<()> {
    let dup = nix::unistd::dup(from.as_fd())?;
    let mut dir = Dir::from_fd(dup)?;
    let names: Vec<(std::ffi::CString, Option<Type>)> = dir
        .iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect();
    for (name, _) in names {
        let st = fstatat(from.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                mkdirat(to.as_fd(), name.as_c_str(), mode)?;
                let open = |d: &OwnedFd| {
                    openat(
                        d.as_fd(),
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                };
                copy_tree(&open(from)?, &open(to)?)?;
            }
            libc::S_IFREG => {
                let src = openat(
                    from.as_fd(),
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let dst = openat(
                    to.as_fd(),
                    name.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    mode,
                )?;
                let mut src = std::fs::File::from(src);
                let mut dst = std::fs::File::from(dst);
                std::io::copy(&mut src, &mut dst)
                    .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(from.as_fd(), name.as_c_str())?;
                symlinkat(target.as_os_str(), to.as_fd(), name.as_c_str())?;
            }
            _ => continue,
        }
        fchownat(
            to.as_fd(),
            name.as_c_str(),
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            fchmodat(
                to.as_fd(),
                name.as_c_str(),
                mode,
                FchmodatFlags::FollowSymlink,
            )?;
        }
    }
    Ok(())
}
