//! Device nodes in the container's /dev and the standard links.
//!
//! Outside a user namespace nodes are made with mknod; inside one mknod is
//! not allowed, so each node is an empty file with the host's device
//! bind-mounted over it, as runc does.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use super::mounts::bind_fd;
use super::resolve::{Create, Root};
use super::RootfsError;

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runtime spec, "Default Devices").
pub fn default_nodes() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: LinuxDeviceType::C,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// The defaults plus `linux.devices`, a config entry replacing a default at the same path.
pub fn nodes(spec: &Spec) -> Vec<Node> {
    let mut out = default_nodes();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let node = from_spec(d);
        out.retain(|n| n.path != node.path);
        out.push(node);
    }
    out
}

fn from_spec(d: &LinuxDevice) -> Node {
    Node {
        path: d.path().clone(),
        kind: d.typ(),
        major: d.major(),
        minor: d.minor(),
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

/// Whether brig should populate /dev: not when the config binds the host's /dev.
pub fn should_populate(spec: &Spec) -> bool {
    !spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

/// Creates every node, inside `root`.
pub fn create_nodes(root: &Root, nodes: &[Node], in_userns: bool) -> Result<(), RootfsError> {
    for n in nodes {
        let what = n.path.display().to_string();
        if in_userns {
            bind_host_device(root, n)?;
            continue;
        }
        let (parent, name) = root.resolve_parent(&n.path)?;
        let kind = match n.kind {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let dev = makedev(n.major as u64, n.minor as u64);
        match mknodat(
            parent.as_fd(),
            name.as_os_str(),
            kind,
            Mode::from_bits_truncate(n.mode),
            dev,
        ) {
            Ok(()) => {}
            Err(nix::Error::EEXIST) => {
                // Replace whatever the image had there (a file, a stale node).
                unlinkat(parent.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| RootfsError::sys("unlink", &what, e))?;
                mknodat(
                    parent.as_fd(),
                    name.as_os_str(),
                    kind,
                    Mode::from_bits_truncate(n.mode),
                    dev,
                )
                .map_err(|e| RootfsError::sys("mknod", &what, e))?;
            }
            Err(e) => return Err(RootfsError::sys("mknod", &what, e)),
        }
        fchownat(
            parent.as_fd(),
            name.as_os_str(),
            Some(Uid::from_raw(n.uid)),
            Some(Gid::from_raw(n.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| RootfsError::sys("chown", &what, e))?;
    }
    Ok(())
}

fn bind_host_device(root: &Root, n: &Node) -> Result<(), RootfsError> {
    let what = n.path.display().to_string();
    let src = nix::fcntl::open(&n.path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| RootfsError::sys("open host device", &what, e))?;
    let target = root.resolve(&n.path, Create::File)?;
    bind_fd(&src, &target, false).map_err(|e| RootfsError::sys("bind host device", &what, e))
}

/// The links of a standard /dev: fd, stdin, stdout, stderr, ptmx (and core if the host has kcore).
pub fn create_links(root: &Root) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let (parent, name) = root.resolve_parent(Path::new(link))?;
        match symlinkat(target, parent.as_fd(), name.as_os_str()) {
            Ok(()) => {}
            Err(nix::Error::EEXIST) if link == "/dev/ptmx" => {
                // A ptmx node from the image or linux.devices: the link to the
                // container's own devpts instance must win.
                unlinkat(parent.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| RootfsError::sys("unlink", link, e))?;
                symlinkat(target, parent.as_fd(), name.as_os_str())
                    .map_err(|e| RootfsError::sys("symlink", link, e))?;
            }
            Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(RootfsError::sys("symlink", link, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_devices_replace_defaults() {
        let mut v = serde_json::to_value(crate::config::default_spec(false)).unwrap();
        v["linux"]["devices"] = serde_json::json!([
            { "path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6 },
            { "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229 }
        ]);
        let spec: Spec = serde_json::from_value(v).unwrap();
        let all = nodes(&spec);
        assert_eq!(all.len(), 7);
        let null = all
            .iter()
            .find(|n| n.path == Path::new("/dev/null"))
            .unwrap();
        assert_eq!((null.mode, null.uid, null.gid), (0o600, 5, 6));
        assert!(should_populate(&spec));
    }
}
