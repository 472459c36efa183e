//! Resource usage of a container's cgroup, in runc's `events --stats` shape.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::Cgroup;

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat, ...) as a map.
fn read_flat(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// A limit file: "max" (v2) or a huge v1 number both mean unlimited.
fn read_limit(path: &Path) -> u64 {
    match fs::read_to_string(path) {
        Ok(s) if s.trim() == "max" => u64::MAX,
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

/// Collects cpu, memory, pids and hugetlb figures.
pub fn collect(cg: &Cgroup) -> Value {
    let mut data = Map::new();
    if let Some((dir, unified)) = cg.controller_dir("cpuacct", "cpu") {
        data.insert("cpu".into(), cpu(cg, &dir, unified));
    }
    if let Some((dir, unified)) = cg.controller_dir("memory", "memory") {
        data.insert("memory".into(), memory(&dir, unified));
    }
    if let Some((dir, _)) = cg.controller_dir("pids", "pids") {
        data.insert(
            "pids".into(),
            json!({ "current": read_u64(&dir.join("pids.current")), "limit": read_limit(&dir.join("pids.max")) }),
        );
    }
    if let Some((dir, unified)) = cg.controller_dir("hugetlb", "hugetlb") {
        let mut sizes = Map::new();
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = if unified {
                name.strip_prefix("hugetlb.")
                    .and_then(|n| n.strip_suffix(".current"))
            } else {
                name.strip_prefix("hugetlb.")
                    .and_then(|n| n.strip_suffix(".usage_in_bytes"))
            };
            if let Some(size) = size.filter(|s| !s.contains('.')) {
                let (usage, max, fail) = if unified {
                    (
                        read_u64(&dir.join(&name)),
                        0,
                        read_flat(&dir.join(format!("hugetlb.{size}.events")))
                            .get("max")
                            .copied()
                            .unwrap_or(0),
                    )
                } else {
                    (
                        read_u64(&dir.join(&name)),
                        read_u64(&dir.join(format!("hugetlb.{size}.max_usage_in_bytes"))),
                        read_u64(&dir.join(format!("hugetlb.{size}.failcnt"))),
                    )
                };
                sizes.insert(
                    size.to_string(),
                    json!({ "usage": usage, "max": max, "failcnt": fail }),
                );
            }
        }
        data.insert("hugetlb".into(), Value::Object(sizes));
    }
    Value::Object(data)
}

fn cpu(cg: &Cgroup, dir: &Path, unified: bool) -> Value {
    if unified {
        let s = read_flat(&dir.join("cpu.stat"));
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        return json!({
            "usage": { "total": g("usage_usec") * 1000, "kernel": g("system_usec") * 1000, "user": g("user_usec") * 1000 },
            "throttling": { "periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_usec") * 1000 }
        });
    }
    let percpu: Vec<u64> = fs::read_to_string(dir.join("cpuacct.usage_percpu"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    // cpuacct.stat counts USER_HZ ticks (100 a second).
    let ticks = read_flat(&dir.join("cpuacct.stat"));
    let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * 10_000_000;
    let thr = cg
        .controller_dir("cpu", "cpu")
        .map(|(d, _)| read_flat(&d.join("cpu.stat")))
        .unwrap_or_default();
    let t = |k: &str| thr.get(k).copied().unwrap_or(0);
    json!({
        "usage": { "total": read_u64(&dir.join("cpuacct.usage")), "percpu": percpu, "kernel": ns("system"), "user": ns("user") },
        "throttling": { "periods": t("nr_periods"), "throttledPeriods": t("nr_throttled"), "throttledTime": t("throttled_time") }
    })
}

fn memory(dir: &Path, unified: bool) -> Value {
    let stat = read_flat(&dir.join("memory.stat"));
    if unified {
        return json!({
            "usage": { "usage": read_u64(&dir.join("memory.current")), "limit": read_limit(&dir.join("memory.max")), "max": read_u64(&dir.join("memory.peak")), "failcnt": read_flat(&dir.join("memory.events")).get("max").copied().unwrap_or(0) },
            "swap": { "usage": read_u64(&dir.join("memory.swap.current")), "limit": read_limit(&dir.join("memory.swap.max")) },
            "cache": stat.get("file").copied().unwrap_or(0),
            "raw": stat,
        });
    }
    let entry = |prefix: &str| {
        json!({
            "usage": read_u64(&dir.join(format!("{prefix}.usage_in_bytes"))),
            "max": read_u64(&dir.join(format!("{prefix}.max_usage_in_bytes"))),
            "failcnt": read_u64(&dir.join(format!("{prefix}.failcnt"))),
            "limit": read_u64(&dir.join(format!("{prefix}.limit_in_bytes"))),
        })
    };
    json!({
        "usage": entry("memory"),
        "swap": entry("memory.memsw"),
        "kernel": entry("memory.kmem"),
        "cache": stat.get("cache").copied().unwrap_or(0),
        "raw": stat,
    })
}

/// How many times the OOM killer has killed in this cgroup.
pub fn oom_kills(cg: &Cgroup) -> u64 {
    match cg.controller_dir("memory", "memory") {
        Some((dir, false)) => read_flat(&dir.join("memory.oom_control"))
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
        Some((dir, true)) => read_flat(&dir.join("memory.events"))
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
        None => 0,
    }
}
