//! Finding the mounted cgroup hierarchies and a process's place in them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::mountinfo;

/// The hierarchies of one mount namespace (by its inode), as last read.
static MOUNTED: Mutex<Option<(u64, Arc<[Hierarchy]>)>> = Mutex::new(None);

fn mount_namespace() -> std::io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/mnt")?.ino())
}

/// The cgroup hierarchies mounted in this process's mount namespace.
///
/// Read once per namespace: a `run` asks at create, start and delete, and
/// the init forked from it asks again (mountinfo parsing was the largest
/// user-CPU item of a `run` in perf).
pub fn mounted() -> std::io::Result<Arc<[Hierarchy]>> {
    let ns = mount_namespace()?;
    let mut cache = MOUNTED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((cached, hs)) = cache.as_ref() {
        if *cached == ns {
            return Ok(Arc::clone(hs));
        }
    }
    let hs: Arc<[Hierarchy]> = hierarchies(&mountinfo::parse(&mountinfo::read_self()?)).into();
    *cache = Some((ns, Arc::clone(&hs)));
    Ok(hs)
}

/// The inode of the current mount namespace, for `carry_into_new_mount_namespace`.
pub fn current_mount_namespace() -> Option<u64> {
    mount_namespace().ok()
}

/// After unshare(CLONE_NEWNS) from the namespace `old`: the new namespace
/// starts as a copy of it, so it has the same hierarchies.
pub fn carry_into_new_mount_namespace(old: Option<u64>) {
    let (Some(old), Ok(new)) = (old, mount_namespace()) else {
        return;
    };
    let mut cache = MOUNTED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((ns, _)) = cache.as_mut().filter(|(ns, _)| *ns == old) {
        *ns = new;
    }
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// The cgroup path mounted at `mount_point` (`/` unless a subtree is bound).
    pub mount_root: PathBuf,
    /// v2 (`cgroup2`) or v1.
    pub unified: bool,
    /// For v1, the `/proc/self/cgroup` key: `cpu,cpuacct`, `memory`, `name=systemd`.
    pub key: String,
}

/// Lists the cgroup hierarchies in a mount table.
pub fn hierarchies(mounts: &[mountinfo::Mount]) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let unified = match m.fs_type {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        // A mount made later on the same point, or on a directory above it,
        // hides it (a tmpfs over /sys/fs/cgroup/unified, say).
        if mounts[i + 1..]
            .iter()
            .any(|later| at_or_below(&m.mount_point, &later.mount_point))
        {
            continue;
        }
        let key = if unified {
            String::new()
        } else {
            v1_key(m.super_options)
        };
        // The same hierarchy may be mounted twice; the first mount wins.
        if out.iter().any(|h| h.key == key) {
            continue;
        }
        out.push(Hierarchy {
            mount_point: PathBuf::from(m.mount_point.as_ref()),
            mount_root: PathBuf::from(m.root.as_ref()),
            unified,
            key,
        });
    }
    out
}

/// A v1 hierarchy's name in /proc/PID/cgroup: its controllers (and
/// `name=`), sorted, from super options that also list rw/ro and flags.
fn v1_key(super_options: &str) -> String {
    let mut names: Vec<&str> = super_options
        .split(',')
        .filter(|o| {
            !matches!(
                *o,
                "rw" | "ro"
                    | "xattr"
                    | "noprefix"
                    | "clone_children"
                    | "cpuset_v2_mode"
                    | "favordynmods"
            ) && !o.starts_with("release_agent=")
        })
        .collect();
    names.sort_unstable();
    names.join(",")
}

/// Whether mount point `p` is `base` or below it. Mountinfo paths are
/// normalized, so comparing bytes is enough (and Path::starts_with, which
/// splits both into components, was most of this module's cost).
fn at_or_below(p: &str, base: &str) -> bool {
    p.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || base.ends_with('/'))
}

/// Parses /proc/PID/cgroup into key → cgroup path (`""` for v2).
pub fn parse_proc_cgroup(text: &str) -> HashMap<String, PathBuf> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let mut key: Vec<&str> = parts.next()?.split(',').collect();
            key.sort_unstable();
            Some((key.join(","), PathBuf::from(parts.next()?)))
        })
        .collect()
}

/// The directory of the process's own cgroup in `h`, or None if it is not visible there.
pub fn own_dir(h: &Hierarchy, own: &HashMap<String, PathBuf>) -> Option<PathBuf> {
    let path = own.get(&h.key)?;
    let rel = path.strip_prefix(&h.mount_root).ok()?;
    Some(h.mount_point.join(rel))
}

/// Whether the host is pure cgroup v2 (one cgroup2 mount and no v1 controllers).
pub fn is_pure_v2(hs: &[Hierarchy]) -> bool {
    hs.iter().all(|h| h.unified) && !hs.is_empty()
}

/// Whether `path` is under a cgroup filesystem mount point.
pub fn is_under(h: &Hierarchy, path: &Path) -> bool {
    path.starts_with(&h.mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hierarchy_hidden_by_a_later_mount_is_not_used() {
        let text = format!("{HYBRID}50 41 0:60 / /sys/fs/cgroup/unified rw - tmpfs none rw\n");
        let hs = hierarchies(&mountinfo::parse(&text));
        assert!(hs.iter().all(|h| !h.unified), "{hs:?}");
        assert_eq!(hs.len(), 3);
    }

    #[test]
    fn at_or_below_compares_whole_components() {
        assert!(at_or_below("/sys/fs/cgroup/unified", "/sys/fs/cgroup"));
        assert!(at_or_below("/sys/fs/cgroup", "/sys/fs/cgroup"));
        assert!(at_or_below("/sys/fs/cgroup", "/"));
        assert!(!at_or_below("/sys/fs/cgroupx", "/sys/fs/cgroup"));
        assert!(!at_or_below("/sys", "/sys/fs"));
    }

    #[test]
    fn finds_hybrid_hierarchies_and_own_dirs() {
        let hs = hierarchies(&mountinfo::parse(HYBRID));
        let keys: Vec<&str> = hs.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["cpu,cpuacct", "memory", "name=systemd", ""]);
        assert!(!is_pure_v2(&hs));
        let own = parse_proc_cgroup("4:memory:/a/b\n2:cpuacct,cpu:/\n0::/x\n");
        assert_eq!(
            own_dir(&hs[1], &own),
            Some(PathBuf::from("/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            own_dir(&hs[0], &own),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/"))
        );
        assert_eq!(
            own_dir(&hs[3], &own),
            Some(PathBuf::from("/sys/fs/cgroup/unified/x"))
        );
        assert_eq!(own_dir(&hs[2], &own), None);
    }
}
