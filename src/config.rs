//! config.json: loading with precise errors, validation, and the default spec.
//!
//! A config that parses as it is takes the direct route. Any other goes
//! through a `serde_json::Value` first so that a malformed file reports line
//! and column, a wrongly typed field reports its JSON path, and unknown
//! capability names can be dropped with a warning (the runtime spec says a
//! runtime must not fail on them) before the typed parse.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
use serde_json::Value;

use crate::logging;
use crate::rootfs::mount_options;

/// Why a config.json could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON at line {line}, column {column}: {msg}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{path}: field {field}: {msg}")]
    Field {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("config.json: {field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("config.json: {field}: not supported by brig: {msg}")]
    Unsupported { field: String, msg: String },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// A config.json read and checked.
pub struct Config {
    pub spec: Spec,
    /// The file's text when it is exactly what `spec` parses from (so a
    /// record of the spec can be a copy, not a serialization); None when
    /// parsing had to change something.
    pub json: Option<Vec<u8>>,
}

/// Reads, parses and validates the config.json at `path` (the rootfs is not touched).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (spec, exact) = parse_exact(path, &bytes)?;
    validate(&spec)?;
    Ok(Config {
        spec,
        json: exact.then_some(bytes),
    })
}

/// Parses config.json bytes; `path` only names the file in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Spec, ConfigError> {
    parse_exact(path, bytes).map(|(spec, _)| spec)
}

/// Like `parse`; also says whether the bytes parsed as they are.
fn parse_exact(path: &Path, bytes: &[u8]) -> Result<(Spec, bool), ConfigError> {
    // Almost every config is well formed: deserializing straight from the
    // bytes costs a fraction of the generic route below, which only runs
    // when this fails and then gives the error its JSON path or drops
    // unknown capabilities.
    // The whole text is checked as UTF-8 once: from_slice would check each
    // string it copies, at a higher cost per byte.
    if let Ok(Ok(spec)) = std::str::from_utf8(bytes).map(serde_json::from_str::<Spec>) {
        return Ok((spec, true));
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        msg: strip_position(&e.to_string()),
    })?;
    drop_unknown_capabilities(&mut value);
    serde_path_to_error::deserialize(value)
        .map(|spec| (spec, false))
        .map_err(|e| ConfigError::Field {
            path: path.to_path_buf(),
            field: e.path().to_string(),
            msg: e.into_inner().to_string(),
        })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Removes capability names nobody knows from every set, warning about each.
fn drop_unknown_capabilities(value: &mut Value) {
    let Some(caps) = value
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (set, names) in caps.iter_mut() {
        let Some(list) = names.as_array_mut() else {
            continue;
        };
        list.retain(|name| {
            let known = serde_json::from_value::<Capability>(name.clone()).is_ok();
            if !known {
                logging::warn(&format!(
                    "process.capabilities.{set}: unknown capability {name} ignored"
                ));
            }
            known || !name.is_string()
        });
    }
}

/// Checks the rules of the runtime spec that types alone cannot express.
pub fn validate(spec: &Spec) -> Result<(), ConfigError> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            "ociVersion",
            format!("unsupported version {:?}, brig runs 1.x", spec.version()),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path", "must not be empty"));
    }
    validate_process(spec)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing: brig runs Linux containers"))?;
    let namespaces = validate_namespaces(spec)?;
    let has = |t: LinuxNamespaceType| namespaces.contains(&t);

    if (spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_deref().is_some_and(|h| !h.is_empty()))
        && !has(LinuxNamespaceType::Uts)
    {
        return Err(invalid(
            "hostname",
            "setting a hostname or domainname needs a new uts namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            validate_sysctl(key, &has)?;
        }
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        if !has(LinuxNamespaceType::Time) {
            return Err(invalid("linux.timeOffsets", "needs a time namespace"));
        }
        for clock in linux.time_offsets().iter().flat_map(|m| m.keys()) {
            if clock != "monotonic" && clock != "boottime" {
                return Err(invalid(
                    format!("linux.timeOffsets.{clock}"),
                    "only monotonic and boottime clocks can be offset",
                ));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mount_options::parse(m.options().as_deref().unwrap_or_default())
            .map_err(|e| invalid(format!("mounts[{i}].options"), e.to_string()))?;
        if m.destination().as_os_str().is_empty() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                "must not be empty",
            ));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                "must be an absolute path",
            ));
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !p.is_empty() && mount_options::propagation_flag(p).is_none() {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    if linux.intel_rdt().is_some() {
        return Err(ConfigError::Unsupported {
            field: "linux.intelRdt".into(),
            msg: "this host has no resctrl support in brig".into(),
        });
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(ConfigError::Unsupported {
            field: "linux.netDevices".into(),
            msg: "moving network devices into the container is not implemented".into(),
        });
    }
    Ok(())
}

fn validate_process(spec: &Spec) -> Result<(), ConfigError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name the program to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    let mut seen = HashSet::new();
    for r in process.rlimits().iter().flatten() {
        if !seen.insert(r.typ().to_string()) {
            return Err(invalid(
                "process.rlimits",
                format!("{} is given twice", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(invalid(
                "process.rlimits",
                format!("{}: soft limit is above the hard limit", r.typ()),
            ));
        }
    }
    Ok(())
}

/// Returns the namespace types the container gets, checking the list's rules.
fn validate_namespaces(spec: &Spec) -> Result<HashSet<LinuxNamespaceType>, ConfigError> {
    let linux = spec.linux().as_ref();
    let mut seen = HashSet::new();
    for (i, ns) in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} is listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    "must be an absolute path",
                ));
            }
        }
    }
    let user = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User);
    let maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    match user {
        None if maps => {
            return Err(invalid(
                "linux.uidMappings",
                "mappings need a user namespace in linux.namespaces",
            ))
        }
        Some(ns) if ns.path().is_none() => {
            let l = linux.expect("user namespace implies linux section");
            if l.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || l.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
            {
                return Err(invalid(
                    "linux.uidMappings",
                    "a new user namespace needs both uidMappings and gidMappings",
                ));
            }
        }
        _ => {}
    }
    Ok(seen)
}

/// Sysctls are namespaced; writing one whose namespace the container shares
/// with the host would change the host.
fn validate_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), ConfigError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let field = format!("linux.sysctl.{key}");
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(invalid(
            field,
            "not a namespaced sysctl: setting it would change the host",
        ));
    };
    if has(needs) {
        Ok(())
    } else {
        Err(invalid(field, format!("needs a new {needs} namespace")))
    }
}

/// The config.json `brig spec` writes: runc's defaults, or its rootless variant.
pub fn default_spec(rootless: bool) -> Spec {
    let mut v = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "brig",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if rootless {
        make_rootless(&mut v);
    }
    serde_json::from_value(v).expect("the built-in default spec is valid")
}

/// Adapts the default spec as `runc spec --rootless` does: a user namespace
/// mapping the caller, no network namespace, /sys bound from the host, and no
/// cgroup mount or device rules (an unprivileged user cannot apply them).
fn make_rootless(v: &mut Value) {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let linux = &mut v["linux"];
    if let Some(list) = linux["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != "network");
        list.push(serde_json::json!({ "type": "user" }));
    }
    linux["uidMappings"] = serde_json::json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
    linux["gidMappings"] = serde_json::json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);
    if let Some(obj) = linux.as_object_mut() {
        obj.remove("resources");
    }
    if let Some(mounts) = v["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = serde_json::json!({
                    "destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
                });
            } else if m["destination"] == "/dev/pts" {
                if let Some(opts) = m["options"].as_array_mut() {
                    opts.retain(|o| o != "gid=5");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Spec, ConfigError> {
        let spec = parse(Path::new("config.json"), s.as_bytes())?;
        validate(&spec)?;
        Ok(spec)
    }

    fn default_json() -> Value {
        serde_json::to_value(default_spec(false)).expect("serialize")
    }

    #[test]
    fn default_specs_validate() {
        validate(&default_spec(false)).expect("default");
        validate(&default_spec(true)).expect("rootless");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = parse_str("{\n  \"ociVersion\": ,\n}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config.json"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn type_error_names_the_json_path() {
        let mut v = default_json();
        v["process"]["user"]["uid"] = Value::from("root");
        let err = parse_str(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("process.user.uid"), "{err}");
    }

    #[test]
    fn unknown_capability_is_dropped_not_fatal() {
        let mut v = default_json();
        v["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .expect("array")
            .push(Value::from("CAP_NOT_A_THING"));
        let spec = parse_str(&v.to_string()).expect("parses");
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone());
        assert_eq!(
            caps.and_then(|c| c.bounding().clone()).map(|b| b.len()),
            Some(3)
        );
    }

    #[test]
    fn hostname_needs_uts_namespace() {
        let mut v = default_json();
        v["linux"]["namespaces"]
            .as_array_mut()
            .expect("array")
            .retain(|n| n["type"] != "uts");
        let err = parse_str(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("hostname"), "{err}");
    }

    #[test]
    fn host_sysctl_is_refused() {
        let mut v = default_json();
        v["linux"]["sysctl"] = serde_json::json!({ "vm.swappiness": "0" });
        let err = parse_str(&v.to_string()).unwrap_err();
        assert!(
            err.to_string().contains("linux.sysctl.vm.swappiness"),
            "{err}"
        );
        v["linux"]["sysctl"] = serde_json::json!({ "net.ipv4.ip_forward": "1" });
        parse_str(&v.to_string()).expect("net sysctl with a net namespace");
    }

    #[test]
    fn new_user_namespace_needs_mappings() {
        let mut v = default_json();
        v["linux"]["namespaces"]
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!({ "type": "user" }));
        let err = parse_str(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("uidMappings"), "{err}");
    }

    #[test]
    fn empty_args_and_relative_cwd_are_refused() {
        let mut v = default_json();
        v["process"]["args"] = serde_json::json!([]);
        assert!(parse_str(&v.to_string())
            .unwrap_err()
            .to_string()
            .contains("process.args"));
        let mut v = default_json();
        v["process"]["cwd"] = Value::from("tmp");
        assert!(parse_str(&v.to_string())
            .unwrap_err()
            .to_string()
            .contains("process.cwd"));
    }
}
