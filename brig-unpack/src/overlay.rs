//! Mounting and unmounting a bundle's overlay rootfs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount as sys_mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, IoContext, Result};

/// Longest mount data the kernel takes in one page.
const MAX_MOUNT_DATA: usize = 4095;

/// Builds the overlay mount options; `lowers` are given bottom first.
pub fn options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let check = |p: &Path| -> Result<String> {
        let s = p.to_str().ok_or_else(|| Error::Bundle {
            path: p.to_path_buf(),
            reason: "overlay paths must be UTF-8".into(),
        })?;
        // These characters separate overlay options and lower layers.
        if s.contains([',', ':', '\\', '\n']) {
            return Err(Error::Bundle {
                path: p.to_path_buf(),
                reason: "overlay paths must not contain ',', ':' or '\\'".into(),
            });
        }
        Ok(s.to_string())
    };
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| check(p))
        .collect::<Result<_>>()?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        check(upper)?,
        check(work)?
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::Bundle {
            path: upper.to_path_buf(),
            reason: format!("overlay options are {} bytes, over the kernel's page limit; use a shorter --store path", data.len()),
        });
    }
    Ok(data)
}

/// Mounts an overlay of `lowers` (bottom first) with `upper`/`work` on `target`.
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let data = options(lowers, upper, work)?;
    sys_mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::Bundle {
        path: target.to_path_buf(),
        reason: format!("mounting overlay: {}", std::io::Error::from(e)),
    })
}

/// Unmounts `target`.
pub fn umount(target: &Path) -> Result<()> {
    umount2(target, MntFlags::empty()).map_err(|e| Error::Bundle {
        path: target.to_path_buf(),
        reason: format!("unmounting: {}", std::io::Error::from(e)),
    })
}

/// Whether something is mounted on `target` (its device differs from its parent's).
pub fn is_mounted(target: &Path) -> Result<bool> {
    let Some(parent) = target.parent() else {
        return Ok(true);
    };
    let t = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).at(target),
    };
    let p = std::fs::metadata(parent).at(parent)?;
    Ok(t.dev() != p.dev() || t.ino() == p.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_string_orders_top_first() {
        let o = options(
            &[PathBuf::from("/s/a"), PathBuf::from("/s/b")],
            Path::new("/b/u"),
            Path::new("/b/w"),
        )
        .unwrap();
        assert_eq!(o, "lowerdir=/s/b:/s/a,upperdir=/b/u,workdir=/b/w");
        assert!(options(&[PathBuf::from("/s/a:b")], Path::new("/u"), Path::new("/w")).is_err());
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/very/long/store/path/layers/sha256/{i:064}")))
            .collect();
        assert!(options(&many, Path::new("/u"), Path::new("/w")).is_err());
    }
}
