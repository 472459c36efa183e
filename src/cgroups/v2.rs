//! cgroup v2 (unified) controller files, with runc's conversions from the
//! v1-shaped values of config.json.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory,
};

use super::{bpf, write_file, CgroupError};

/// cpu.shares (2..262144) to cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10..1000) to io.weight (1..10000).
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight.clamp(10, 1000)) - 10) * 9999 / 990
}

/// Makes the directories from the hierarchy's root `mount` down to `leaf`,
/// enabling every available controller in each parent on the way, so the
/// leaf can use them all (runc does the same).
pub fn enable_controllers(mount: &Path, leaf: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = leaf.strip_prefix(mount) else {
        return Ok(());
    };
    let mut dir = mount.to_path_buf();
    for part in rel.components() {
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = available
            .split_whitespace()
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() {
            write_file(
                "cgroup.subtree_control",
                &dir.join("cgroup.subtree_control"),
                &enable.join(" "),
            )?;
        }
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    what: "create cgroup",
                    path: dir,
                    source,
                });
            }
        }
    }
    Ok(())
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// memory.max, memory.low, memory.swap.max (the spec's swap is memory+swap).
pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    if let Some(s) = m.swap() {
        let v = match (s, m.limit()) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(l)) if l >= 0 => {
                if s < l {
                    return Err(CgroupError::Unsupported {
                        resource: "memory.swap".into(),
                        msg: format!("memory+swap {s} is below the memory limit {l}"),
                    });
                }
                (s - l).to_string()
            }
            _ => {
                return Err(CgroupError::Unsupported {
                    resource: "memory.swap".into(),
                    msg: "on cgroup v2 a swap limit needs a memory limit too".into(),
                })
            }
        };
        let file = dir.join("memory.swap.max");
        if file.exists() {
            write_file("memory.swap", &file, &v)?;
        } else if v != "0" && v != "max" {
            return Err(CgroupError::Unsupported {
                resource: "memory.swap".into(),
                msg: format!(
                    "{} is missing: swap accounting is off on this host",
                    file.display()
                ),
            });
        }
    }
    if let Some(l) = m.limit() {
        if m.check_before_update() == Some(true) && l >= 0 {
            let current: i64 = std::fs::read_to_string(dir.join("memory.current"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            if current > l {
                return Err(CgroupError::Unsupported {
                    resource: "memory.limit".into(),
                    msg: format!(
                        "the cgroup already uses {current} bytes, more than the new limit {l}"
                    ),
                });
            }
        }
        write_file("memory.limit", &dir.join("memory.max"), &max_or(l))?;
    }
    if let Some(r) = m.reservation() {
        write_file("memory.reservation", &dir.join("memory.low"), &max_or(r))?;
    }
    if m.swappiness().is_some_and(|s| s != 0) && m.swappiness() != Some(60) {
        return Err(CgroupError::Unsupported {
            resource: "memory.swappiness".into(),
            msg: "cgroup v2 has no per-cgroup swappiness".into(),
        });
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(CgroupError::Unsupported {
            resource: "memory.disableOOMKiller".into(),
            msg: "cgroup v2 cannot disable the OOM killer".into(),
        });
    }
    Ok(())
}

/// cpu.weight, cpu.max, cpu.max.burst, cpu.idle.
pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
        return Err(CgroupError::Unsupported {
            resource: "cpu.realtimeRuntime".into(),
            msg: "cgroup v2 has no realtime cpu controller".into(),
        });
    }
    if let Some(s) = c.shares() {
        write_file(
            "cpu.shares",
            &dir.join("cpu.weight"),
            &shares_to_weight(s).to_string(),
        )?;
    }
    if c.quota().is_some() || c.period().is_some() {
        // cpu.max holds both; keep the one not given (an update may change
        // only the quota or only the period).
        let current = std::fs::read_to_string(dir.join("cpu.max")).unwrap_or_default();
        let mut old = current.split_whitespace();
        let old_quota = old.next().unwrap_or("max").to_string();
        let old_period = old
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(100_000u64);
        let quota = c.quota().map_or(old_quota, max_or);
        let period = c.period().unwrap_or(old_period);
        write_file(
            "cpu.quota",
            &dir.join("cpu.max"),
            &format!("{quota} {period}"),
        )?;
    }
    if let Some(b) = c.burst() {
        write_file("cpu.burst", &dir.join("cpu.max.burst"), &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        write_file("cpu.idle", &dir.join("cpu.idle"), &i.to_string())?;
    }
    Ok(())
}

/// io.weight and io.max.
pub fn block_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // BFQ's io.bfq.weight takes blkio's 10..1000 scale as it is; io.weight
    // takes 1..10000.
    let (weight_file, convert): (&str, fn(u16) -> u64) = if dir.join("io.bfq.weight").exists() {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", blkio_weight_to_io)
    };
    if let Some(w) = b.weight() {
        write_file(
            "blockIO.weight",
            &dir.join(weight_file),
            &format!("default {}", convert(w)),
        )?;
    }
    if b.leaf_weight().is_some() {
        return Err(CgroupError::Unsupported {
            resource: "blockIO.leafWeight".into(),
            msg: "cgroup v2 has no leaf weight".into(),
        });
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            write_file(
                "blockIO.weightDevice",
                &dir.join(weight_file),
                &format!("{}:{} {}", d.major(), d.minor(), convert(w)),
            )?;
        }
    }
    let throttles = [
        (
            "blockIO.throttleReadBpsDevice",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ];
    for (resource, key, list) in throttles {
        for d in list.iter().flatten() {
            write_file(
                resource,
                &dir.join("io.max"),
                &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// hugetlb.SIZE.max, and hugetlb.SIZE.rsvd.max where the kernel has it.
pub fn hugetlb(dir: &Path, h: &LinuxHugepageLimit) -> Result<(), CgroupError> {
    super::write_hugetlb(dir, h.page_size(), ("max", "rsvd.max"), &max_or(h.limit()))
}

/// linux.resources.unified: each key must be a file of an enabled controller.
pub fn unified(dir: &Path, u: &HashMap<String, String>) -> Result<(), CgroupError> {
    let enabled = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for key in keys {
        let resource = format!("unified.{key}");
        if key.contains('/') || key.starts_with('.') {
            return Err(CgroupError::Unsupported {
                resource,
                msg: "not a cgroup file name".into(),
            });
        }
        let controller = key.split('.').next().unwrap_or_default();
        let file = dir.join(key);
        if controller != "cgroup" && !enabled.split_whitespace().any(|c| c == controller) {
            return Err(CgroupError::Unsupported {
                resource,
                msg: format!("controller {controller:?} is not enabled for this cgroup"),
            });
        }
        if !file.exists() {
            return Err(CgroupError::Unsupported {
                resource,
                msg: format!("{} does not exist", file.display()),
            });
        }
        write_file(&resource, &file, &u[key])?;
    }
    Ok(())
}

/// Device rules as an eBPF program attached to the cgroup.
pub fn devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    bpf::attach_device_filter(dir, rules)
}

/// Writes cgroup.freeze and waits for cgroup.events to agree.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    write_file(
        "freezer",
        &dir.join("cgroup.freeze"),
        if frozen { "1" } else { "0" },
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_frozen(dir) != frozen {
        if Instant::now() > deadline {
            return Err(CgroupError::Unsupported {
                resource: "freezer".into(),
                msg: format!("{} did not reach frozen={frozen}", dir.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Whether cgroup.events says `frozen 1`.
pub fn is_frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }
}
