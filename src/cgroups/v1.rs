//! cgroup v1 controller files.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory,
};

use super::{write_file, CgroupError};

/// A new cpuset cgroup starts with no cpus and mems, which makes it refuse
/// tasks; copy the parent's down each level brig created.
pub fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let mut chain = Vec::new();
    let mut d = dir;
    while let Some(parent) = d.parent() {
        if !parent.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(d);
        d = parent;
    }
    for d in chain.into_iter().rev() {
        let parent = d.parent().expect("chain holds children only");
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = std::fs::read_to_string(d.join(file)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                write_file("cpuset", &d.join(file), theirs.trim())?;
            }
        }
    }
    Ok(())
}

/// memory.*; the memory+swap limit must never be below the memory limit, so
/// the order of the two writes depends on which way they move.
pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit();
    let swap = m.swap();
    let write_limit = |v: i64| {
        write_file(
            "memory.limit",
            &dir.join("memory.limit_in_bytes"),
            &v.to_string(),
        )
    };
    let write_swap = |v: i64| {
        write_file(
            "memory.swap",
            &dir.join("memory.memsw.limit_in_bytes"),
            &v.to_string(),
        )
    };
    match (limit, swap) {
        (Some(l), Some(s)) => match write_limit(l) {
            // EINVAL: the new limit is above memory+swap; raise that first.
            Err(e) if is_einval(&e) => {
                write_swap(s)?;
                write_limit(l)?;
            }
            other => {
                other?;
                write_swap(s)?;
            }
        },
        (Some(l), None) => {
            if let Err(e) = write_limit(l) {
                if !is_einval(&e) {
                    return Err(e);
                }
                write_swap(l)?;
                write_limit(l)?;
            }
        }
        (None, Some(s)) => write_swap(s)?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        write_file(
            "memory.reservation",
            &dir.join("memory.soft_limit_in_bytes"),
            &r.to_string(),
        )?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::Unsupported {
                resource: "memory.swappiness".into(),
                msg: format!("{s} is out of range 0-100"),
            });
        }
        write_file(
            "memory.swappiness",
            &dir.join("memory.swappiness"),
            &s.to_string(),
        )?;
    }
    if m.disable_oom_killer() == Some(true) {
        write_file(
            "memory.disableOOMKiller",
            &dir.join("memory.oom_control"),
            "1",
        )?;
    }
    Ok(())
}

fn is_einval(e: &CgroupError) -> bool {
    matches!(e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(libc::EINVAL))
}

/// cpu.* (shares, CFS quota and period, burst, realtime, idle).
pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares() {
        write_file("cpu.shares", &dir.join("cpu.shares"), &s.to_string())?;
    }
    if let Some(p) = c.period() {
        write_file("cpu.period", &dir.join("cpu.cfs_period_us"), &p.to_string())?;
    }
    if let Some(q) = c.quota() {
        write_file("cpu.quota", &dir.join("cpu.cfs_quota_us"), &q.to_string())?;
    }
    if let Some(b) = c.burst() {
        write_file("cpu.burst", &dir.join("cpu.cfs_burst_us"), &b.to_string())?;
    }
    if let Some(p) = c.realtime_period() {
        write_file(
            "cpu.realtimePeriod",
            &dir.join("cpu.rt_period_us"),
            &p.to_string(),
        )?;
    }
    if let Some(r) = c.realtime_runtime() {
        write_file(
            "cpu.realtimeRuntime",
            &dir.join("cpu.rt_runtime_us"),
            &r.to_string(),
        )?;
    }
    if let Some(i) = c.idle() {
        write_file("cpu.idle", &dir.join("cpu.idle"), &i.to_string())?;
    }
    Ok(())
}

/// cpuset.cpus and cpuset.mems (same file names on v1 and v2).
pub fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write_file("cpu.cpus", &dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write_file("cpu.mems", &dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

/// blkio.* weights and throttles.
pub fn block_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // With the BFQ scheduler the weight lives in blkio.bfq.weight.
    let weight_file = if dir.join("blkio.weight").exists() {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    if let Some(w) = b.weight() {
        write_file("blockIO.weight", &dir.join(weight_file), &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight() {
        write_file(
            "blockIO.leafWeight",
            &dir.join("blkio.leaf_weight"),
            &w.to_string(),
        )?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let file = format!("{weight_file}_device");
            write_file(
                "blockIO.weightDevice",
                &dir.join(file),
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            write_file(
                "blockIO.weightDevice",
                &dir.join("blkio.leaf_weight_device"),
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (resource, file, list) in throttles {
        for d in list.iter().flatten() {
            write_file(
                resource,
                &dir.join(file),
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// hugetlb.SIZE.limit_in_bytes (and the reservation limit where the kernel has it).
pub fn hugetlb(dir: &Path, h: &LinuxHugepageLimit) -> Result<(), CgroupError> {
    super::write_hugetlb(
        dir,
        h.page_size(),
        ("limit_in_bytes", "rsvd.limit_in_bytes"),
        &h.limit().to_string(),
    )
}

/// The devices controller's rule line for a rule: `c 1:3 rwm`.
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = d.typ().map_or("a".to_string(), |t| t.as_str().to_string());
    let num = |n: Option<i64>| {
        n.filter(|&n| n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// devices.allow / devices.deny, in order, so that later rules win.
/// Each file is opened once: the kernel takes every write as one rule.
pub fn devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let (mut allow, mut deny) = (None, None);
    for d in rules {
        if d.typ() == Some(oci_spec::runtime::LinuxDeviceType::P) {
            // Fifos are not devices to the cgroup.
            continue;
        }
        let (file, name) = if d.allow() {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        let rule = device_rule(d);
        let failed = |source| CgroupError::Write {
            resource: "devices".into(),
            file: dir.join(name),
            value: rule.clone(),
            source,
        };
        let f = match file {
            Some(f) => f,
            None => file.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join(name))
                    .map_err(failed)?,
            ),
        };
        f.write_all(rule.as_bytes()).map_err(failed)?;
    }
    Ok(())
}

/// Writes freezer.state and waits until the kernel reports it reached.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let file = dir.join("freezer.state");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        write_file("freezer", &file, want)?;
        let now = std::fs::read_to_string(&file).unwrap_or_default();
        if now.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Unsupported {
                resource: "freezer".into(),
                msg: format!("{} stuck in {}", file.display(), now.trim()),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether freezer.state says FROZEN.
pub fn is_frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_render_like_runc() {
        let r: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},{"allow":true,"type":"c","major":136,"access":"rwm"}]"#,
        )
        .unwrap();
        let lines: Vec<String> = r.iter().map(device_rule).collect();
        assert_eq!(lines, ["a *:* rwm", "c 1:3 rw", "c 136:* rwm"]);
    }
}
