//! Namespaces: network, joining by path, user namespaces with mappings, and
//! time namespaces with offsets.

use crate::harness::*;
use serde_json::json;
use std::fs;
use std::path::Path;

#[test]
fn network_namespace_has_only_loopback() {
    let env = Env::new("netns");
    let mut b = env.bundle();
    assert!(
        b.namespace_types().iter().any(|t| t == "network"),
        "brig spec asks for a network namespace"
    );
    b.sh("cat /proc/net/dev");
    let out = env.run_ok(&b);
    // Two header lines, then one line per interface: "  lo: 0 0 ...".
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
}

#[test]
fn a_namespace_can_be_joined_by_path() {
    let env = Env::new("joinns");
    let mut owner = env.bundle();
    owner.set("/hostname", json!("ns-owner"));
    owner.args(&["sleep", "1000"]);
    owner.write();
    let owner_id = env.id();
    env.run_detached(&owner, &owner_id);
    let pid = env.state(&owner_id)["pid"].as_i64().expect("owner pid");

    let mut joiner = env.bundle();
    // Joining a uts namespace means taking its hostname, not setting one.
    joiner.remove("/hostname");
    joiner.namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    joiner.namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
    joiner.sh("hostname; readlink /proc/self/ns/ipc");
    let out = env.run_ok(&joiner);
    let owner_ipc = fs::read_link(format!("/proc/{pid}/ns/ipc")).expect("owner's ipc namespace");
    assert_eq!(out, format!("ns-owner\n{}\n", owner_ipc.display()));
}

#[test]
fn user_namespace_with_uid_and_gid_mappings() {
    let env = Env::new("userns");
    let mut b = env.bundle();
    b.namespace("user", None);
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    // cgroup mounts inside a user namespace belong to the cgroup issue.
    let mounts: Vec<_> = b
        .get("/mounts")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["type"] != "cgroup" && m["type"] != "cgroup2")
        .collect();
    b.set("/mounts", json!(mounts));
    b.sh("id -u; id -g
         cat /proc/self/uid_map /proc/self/gid_map
         stat -c %u:%g /bin/busybox
         stat -c '%F %t:%T' /dev/null
         echo x > /dev/null && echo null-ok");
    let out = env.run_ok(&b);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0], ["0"], "uid inside");
    assert_eq!(lines[1], ["0"], "gid inside");
    assert_eq!(lines[2], ["0", "100000", "65536"], "uid_map");
    assert_eq!(lines[3], ["0", "100000", "65536"], "gid_map");
    // The rootfs belongs to host root, which is unmapped: the overflow ids.
    assert_eq!(
        lines[4],
        ["65534:65534"],
        "owner of a host-root file seen from inside"
    );
    // Devices cannot be made inside a user namespace; they must still work.
    assert_eq!(lines[5], ["character", "special", "file", "1:3"], "{out}");
    assert_eq!(lines[6], ["null-ok"]);
}

fn uptime() -> f64 {
    let text = fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("odd /proc/uptime {text:?}"))
}

#[test]
fn time_namespace_offsets_shift_the_boottime_clock() {
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: this kernel has no time namespaces");
        return;
    }
    let env = Env::new("timens");
    let offset = 10 * 86400;
    let mut b = env.bundle();
    b.namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"boottime": {"secs": offset, "nanosecs": 0}, "monotonic": {"secs": offset, "nanosecs": 0}}),
    );
    b.sh("cat /proc/uptime");
    let before = uptime();
    let out = env.run_ok(&b);
    let after = uptime();
    let inside: f64 = out
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("odd uptime inside: {out:?}"));
    let offset = offset as f64;
    // Bounds, not timing: the reading inside happened between the two outside.
    assert!(
        inside >= before + offset - 0.01 && inside <= after + offset + 0.01,
        "uptime inside {inside} is not host uptime [{before}, {after}] + {offset}"
    );
}
