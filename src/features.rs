//! `brig features`: what this brig on this kernel supports, as the runtime
//! spec's features document. Every list is derived from the code that does
//! the work (the mount option tables, the hook kinds, the seccomp compiler
//! asked about each name, the kernel asked about namespaces, capabilities
//! and seccomp flags), so it cannot drift from the truth.

use serde_json::{json, Value};

use crate::hooks::Kind;
use crate::rootfs::mount_options;

/// Every seccomp action, operator, architecture and flag name the runtime
/// spec defines; the compiler decides which of them brig supports.
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
const SECCOMP_ARCHS: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
];
const SECCOMP_FLAGS: &[(&str, u32)] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", 1),
    ("SECCOMP_FILTER_FLAG_LOG", 1 << 1),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 1 << 2),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", 1 << 5),
];
const NAMESPACES: &[(&str, &str)] = &[
    ("cgroup", "cgroup"),
    ("ipc", "ipc"),
    ("mount", "mnt"),
    ("network", "net"),
    ("pid", "pid"),
    ("time", "time"),
    ("user", "user"),
    ("uts", "uts"),
];

/// Whether the seccomp compiler accepts a profile.
fn compiles(profile: Value) -> bool {
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(profile)
        .ok()
        .is_some_and(|p| crate::seccomp::compile(&p).is_ok())
}

fn seccomp_section() -> Value {
    let rule = |action: &str| {
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/agent",
        "syscalls": [{ "names": ["getcwd"], "action": action }] })
    };
    let actions: Vec<&str> = SECCOMP_ACTIONS
        .iter()
        .copied()
        .filter(|a| compiles(rule(a)))
        .collect();
    let operators: Vec<&str> = SECCOMP_OPERATORS
        .iter()
        .copied()
        .filter(|op| compiles(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{ "names": ["getcwd"],
            "action": "SCMP_ACT_ERRNO", "args": [{ "index": 0, "value": 1, "valueTwo": 1, "op": op }] }] })))
        .collect();
    let archs: Vec<&str> = SECCOMP_ARCHS
        .iter()
        .copied()
        .filter(|a| compiles(json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": [a] })))
        .collect();
    let known: Vec<(&str, u32)> = SECCOMP_FLAGS
        .iter()
        .copied()
        .filter(|(f, _)| compiles(json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": [f] })))
        .collect();
    let supported: Vec<&str> = known
        .iter()
        .filter(|(_, bit)| kernel_has_seccomp_flag(*bit))
        .map(|(f, _)| *f)
        .collect();
    json!({
        "enabled": !actions.is_empty(),
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        "supportedFlags": supported,
    })
}

/// libseccomp's probe: seccomp(SET_MODE_FILTER, flag, NULL) fails with
/// EFAULT when the kernel knows the flag, EINVAL when it does not.
fn kernel_has_seccomp_flag(flag: u32) -> bool {
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const NEW_LISTENER: u32 = 1 << 3;
    const WAIT_KILLABLE_RECV: u32 = 1 << 5;
    // The kernel takes WAIT_KILLABLE_RECV only together with NEW_LISTENER.
    let flags = if flag == WAIT_KILLABLE_RECV {
        flag | NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a null program makes the kernel fail before it installs
    // anything; only the error code is read.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            std::ptr::null::<u8>(),
        )
    };
    rc == -1 && nix::Error::last() == nix::Error::EFAULT
}

/// The names of every mount option the parser accepts.
pub fn mount_option_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = mount_options::FLAG_OPTIONS
        .iter()
        .map(|(n, ..)| *n)
        .chain(mount_options::PROPAGATION_OPTIONS.iter().map(|(n, _)| *n))
        .chain(mount_options::RECURSIVE_OPTIONS.iter().map(|(n, ..)| *n))
        .chain(
            mount_options::RECURSIVE_ATIME_OPTIONS
                .iter()
                .map(|(n, _)| *n),
        )
        .chain(mount_options::EXTENSION_OPTIONS.iter().copied())
        .collect();
    names.sort_unstable();
    names
}

/// The namespaces this kernel has.
pub fn namespaces() -> Vec<&'static str> {
    NAMESPACES
        .iter()
        .filter(|(_, proc)| std::path::Path::new(&format!("/proc/self/ns/{proc}")).exists())
        .map(|(name, _)| *name)
        .collect()
}

/// The whole features document.
pub fn document() -> Value {
    let mut caps: Vec<String> = caps::runtime::thread_all_supported()
        .iter()
        .map(|c| c.to_string())
        .collect();
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": Kind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "mountOptions": mount_option_names(),
        "linux": {
            "namespaces": namespaces(),
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true },
            "seccomp": seccomp_section(),
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": {
            "io.github.brig.version": env!("CARGO_PKG_VERSION"),
            "io.github.brig.commit": env!("BRIG_GIT_COMMIT"),
            "io.github.brig.seccomp.compiler": "brig's own BPF compiler (no libseccomp)",
        },
        "potentiallyUnsafeConfigAnnotations": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_parses_as_the_spec_type_and_lists_what_brig_does() {
        let doc = document();
        let parsed: oci_spec::runtime::Features =
            serde_json::from_value(doc.clone()).expect("features parse");
        assert_eq!(parsed.oci_version_max(), crate::OCI_VERSION);
        let opts = mount_option_names();
        assert!(opts.contains(&"rro") && opts.contains(&"tmpcopyup") && !opts.contains(&"idmap"));
        // Every advertised mount option parses.
        for o in &opts {
            mount_options::parse(&[o]).unwrap_or_else(|e| panic!("{o}: {e}"));
        }
        assert_eq!(doc["hooks"].as_array().map(Vec::len), Some(6));
        assert!(doc["linux"]["namespaces"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x == "pid")));
    }
}
