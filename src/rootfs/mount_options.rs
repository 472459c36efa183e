//! Mount options: the table of every option brig accepts and its meaning.
//!
//! This is pure parsing; `rootfs::mounts` applies the result. `brig features`
//! (a later issue) can list [`FLAG_OPTIONS`] and friends as the truth.

use libc::c_ulong;

/// Options that set (or, with `clear`, unset) a mount(2) flag.
pub const FLAG_OPTIONS: &[(&str, bool, c_ulong)] = &[
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("defaults", false, 0),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("iversion", false, libc::MS_I_VERSION),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("loud", true, libc::MS_SILENT),
    ("mand", false, libc::MS_MANDLOCK),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("noiversion", true, libc::MS_I_VERSION),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("nosymfollow", false, libc::MS_NOSYMFOLLOW),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("silent", false, libc::MS_SILENT),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("symfollow", true, libc::MS_NOSYMFOLLOW),
    ("sync", false, libc::MS_SYNCHRONOUS),
];

/// Propagation options, applied with a separate mount(2) call each.
pub const PROPAGATION_OPTIONS: &[(&str, c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Recursive options, applied to the whole mount tree with mount_setattr(2):
/// (name, clear, attribute).
pub const RECURSIVE_OPTIONS: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// Recursive access-time options: they replace the whole atime field.
pub const RECURSIVE_ATIME_OPTIONS: &[(&str, u64)] = &[
    ("rrelatime", MOUNT_ATTR_RELATIME),
    ("rnorelatime", MOUNT_ATTR_RELATIME),
    ("rnoatime", MOUNT_ATTR_NOATIME),
    ("ratime", MOUNT_ATTR_RELATIME),
    ("rstrictatime", MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", MOUNT_ATTR_RELATIME),
];

/// brig's own options (not passed to the kernel).
pub const EXTENSION_OPTIONS: &[&str] = &["tmpcopyup"];

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// A mount's options, sorted by how they are applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2).
    pub flags: c_ulong,
    /// Propagation changes, in the order given.
    pub propagation: Vec<c_ulong>,
    /// mount_setattr attributes to set recursively.
    pub attr_set: u64,
    /// mount_setattr attributes to clear recursively.
    pub attr_clr: u64,
    /// Filesystem-specific options (`mode=755,size=65536k`), passed as data.
    pub data: String,
    /// Copy the destination's contents into a fresh tmpfs.
    pub tmpcopyup: bool,
}

impl MountOptions {
    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// An option brig recognises but cannot honour.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mount option {0:?} is not supported yet (id-mapped mounts come with their own issue)")]
pub struct UnsupportedOption(pub String);

/// Sorts `options` into flags, propagation, recursive attributes and data.
pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<MountOptions, UnsupportedOption> {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for opt in options.iter().map(AsRef::as_ref) {
        if let Some(&(_, clear, flag)) = FLAG_OPTIONS.iter().find(|(n, ..)| *n == opt) {
            if clear {
                out.flags &= !flag;
            } else {
                out.flags |= flag;
            }
        } else if let Some(flag) = propagation_flag(opt) {
            out.propagation.push(flag);
        } else if let Some(&(_, clear, attr)) = RECURSIVE_OPTIONS.iter().find(|(n, ..)| *n == opt) {
            if clear {
                out.attr_clr |= attr;
                out.attr_set &= !attr;
            } else {
                out.attr_set |= attr;
                out.attr_clr &= !attr;
            }
        } else if let Some(&(_, attr)) = RECURSIVE_ATIME_OPTIONS.iter().find(|(n, _)| *n == opt) {
            out.attr_clr |= MOUNT_ATTR__ATIME;
            out.attr_set = (out.attr_set & !MOUNT_ATTR__ATIME) | attr;
        } else if opt == "tmpcopyup" {
            out.tmpcopyup = true;
        } else if opt == "idmap" || opt == "ridmap" {
            return Err(UnsupportedOption(opt.to_string()));
        } else if !opt.is_empty() {
            data.push(opt);
        }
    }
    out.data = data.join(",");
    Ok(out)
}

/// The mount(2) flags of a propagation name (`rprivate`, `shared`, ...).
pub fn propagation_flag(name: &str) -> Option<c_ulong> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_flags_propagation_and_data() {
        let o = parse(&["nosuid", "rbind", "ro", "rslave", "mode=755", "size=64k"]).unwrap();
        assert_eq!(
            o.flags,
            libc::MS_NOSUID | libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY
        );
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, "mode=755,size=64k");
        assert!(o.is_bind());
    }

    #[test]
    fn later_options_win() {
        let o = parse(&["ro", "rw", "nosuid", "suid", "noexec"]).unwrap();
        assert_eq!(o.flags, libc::MS_NOEXEC);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rro", "rnosuid", "rnoatime"]).unwrap();
        assert_eq!(
            o.attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.attr_clr, MOUNT_ATTR__ATIME);
        let o = parse(&["rro", "rrw"]).unwrap();
        assert_eq!((o.attr_set, o.attr_clr), (0, MOUNT_ATTR_RDONLY));
    }

    #[test]
    fn extensions() {
        assert!(parse(&["tmpcopyup"]).unwrap().tmpcopyup);
        assert_eq!(
            parse(&["idmap"]).unwrap_err(),
            UnsupportedOption("idmap".into())
        );
    }
}
