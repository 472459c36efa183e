//! `update`: change a live container's resources.

use std::io::Read;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxResources, Spec};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::state::{Status, Store};

/// runc's `update` flags; `resources` (a file, or `-` for stdin) takes a
/// whole LinuxResources JSON document.
#[derive(Debug, Default, Clone)]
pub struct UpdateFlags {
    /// LinuxResources JSON from FILE, or `-` for stdin.
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for none).
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    pub memory_swap: Option<String>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_burst: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

/// Parses a size as runc (docker/go-units RAMInBytes) does: `512`, `64k`, `128m`, `1g`, `-1`.
pub fn parse_size(s: &str) -> Result<i64, Error> {
    let bad = || Error::Usage(format!("invalid size {s:?}"));
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

impl UpdateFlags {
    /// The flags as a LinuxResources JSON object (only what was given).
    fn to_value(&self) -> Result<Value, Error> {
        let mut memory = Map::new();
        let put = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| -> Result<(), Error> {
            if let Some(v) = v {
                m.insert(k.into(), json!(parse_size(v)?));
            }
            Ok(())
        };
        put(&mut memory, "limit", &self.memory)?;
        put(&mut memory, "reservation", &self.memory_reservation)?;
        put(&mut memory, "swap", &self.memory_swap)?;
        put(&mut memory, "kernel", &self.kernel_memory)?;
        put(&mut memory, "kernelTCP", &self.kernel_memory_tcp)?;
        let mut cpu = Map::new();
        let fields: [(&str, Option<Value>); 8] = [
            ("shares", self.cpu_shares.map(Value::from)),
            ("quota", self.cpu_quota.map(Value::from)),
            ("period", self.cpu_period.map(Value::from)),
            ("burst", self.cpu_burst.map(Value::from)),
            ("realtimePeriod", self.cpu_rt_period.map(Value::from)),
            ("realtimeRuntime", self.cpu_rt_runtime.map(Value::from)),
            ("cpus", self.cpuset_cpus.clone().map(Value::from)),
            ("mems", self.cpuset_mems.clone().map(Value::from)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                cpu.insert(k.into(), v);
            }
        }
        let mut out = Map::new();
        if !memory.is_empty() {
            out.insert("memory".into(), Value::Object(memory));
        }
        if !cpu.is_empty() {
            out.insert("cpu".into(), Value::Object(cpu));
        }
        if let Some(l) = self.pids_limit {
            out.insert("pids".into(), json!({ "limit": l }));
        }
        if let Some(w) = self.blkio_weight {
            out.insert("blockIO".into(), json!({ "weight": w }));
        }
        Ok(Value::Object(out))
    }
}

/// Applies new resources to container `id` and records them in its state.
pub fn update(store: &Store, id: &str, flags: &UpdateFlags) -> Result<(), Error> {
    let (_lock, c) = store.lock(id)?;
    if !matches!(
        c.status(),
        Status::Created | Status::Running | Status::Paused
    ) {
        return Err(Error::Usage("container not running".into()));
    }
    let delta = match &flags.resources {
        Some(path) => read_resources(path)?,
        None => flags.to_value()?,
    };
    let resources: LinuxResources = serde_path_to_error::deserialize(delta.clone())
        .map_err(|e| Error::Usage(format!("resources: field {}: {}", e.path(), e.inner())))?;
    let cgroup = c
        .cgroup()
        .ok_or_else(|| Error::Usage(format!("container {id} has no cgroup to update")))?;
    cgroup.apply(&resources)?;
    // Record the merged resources, so that state and later updates see them.
    let mut spec = serde_json::to_value(c.spec()?).map_err(|e| Error::Usage(e.to_string()))?;
    merge(&mut spec["linux"]["resources"], &delta);
    let merged: Spec =
        serde_json::from_value(spec).map_err(|e| Error::Usage(format!("merged resources: {e}")))?;
    let json = serde_json::to_vec(&merged).map_err(|e| Error::Usage(e.to_string()))?;
    c.save_spec(&json)?;
    Ok(())
}

fn read_resources(path: &std::path::Path) -> Result<Value, Error> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(Error::io("read resources from stdin"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("read resources {}", path.display())))?;
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("resources {}: malformed JSON: {e}", path.display())))
}

/// Deep-merges `new` into `old`: objects key by key, everything else replaced.
fn merge(old: &mut Value, new: &Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in n {
                merge(o.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (old, new) => *old = new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_size("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn flags_become_resources_and_merge_keeps_the_rest() {
        let f = UpdateFlags {
            memory: Some("64m".into()),
            pids_limit: Some(10),
            cpu_quota: Some(-1),
            ..Default::default()
        };
        let v = f.to_value().unwrap();
        assert_eq!(
            v,
            json!({"memory": {"limit": 67108864}, "cpu": {"quota": -1}, "pids": {"limit": 10}})
        );
        let mut old = json!({"memory": {"limit": 1, "swap": 2}, "devices": []});
        merge(&mut old, &v);
        assert_eq!(old["memory"], json!({"limit": 67108864, "swap": 2}));
        assert_eq!(old["devices"], json!([]));
    }
}
