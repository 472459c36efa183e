//! The config.json documents containerd, Docker and podman really send
//! (integration/fixtures/engine-configs, copied from the project's shared
//! material so the tests never need it).

use crate::harness::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/fixtures/engine-configs")
}

fn create_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("list the engine-config fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.contains("-create-") && name.ends_with("config.json")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_engine_create_config_parses() {
    let files = create_configs();
    // containerd, Docker and podman, plain and with a terminal, plus Docker's --network none.
    assert_eq!(files.len(), 7, "fixtures: {files:?}");
    for path in files {
        let spec = brig::config::load(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .spec;
        let raw: Value = serde_json::from_str(&fs::read_to_string(&path).expect("read fixture"))
            .expect("fixture is JSON");
        // Parsed, not merely accepted: a few fields come through intact.
        let process = spec
            .process()
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no process", path.display()));
        assert_eq!(
            json!(process.args()),
            raw["process"]["args"],
            "{}",
            path.display()
        );
        assert_eq!(
            json!(process.cwd()),
            raw["process"]["cwd"],
            "{}",
            path.display()
        );
        let root = spec
            .root()
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no root", path.display()));
        assert_eq!(
            json!(root.path()),
            raw["root"]["path"],
            "{}",
            path.display()
        );
        let mounts = spec.mounts().as_ref().map(Vec::len).unwrap_or(0);
        assert_eq!(
            Some(mounts),
            raw["mounts"].as_array().map(Vec::len),
            "{}",
            path.display()
        );
        let ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .map(Vec::len)
            .unwrap_or(0);
        assert_eq!(
            Some(ns),
            raw["linux"]["namespaces"].as_array().map(Vec::len),
            "{}",
            path.display()
        );
    }
}

#[test]
fn containerds_config_runs_with_its_mounts_caps_and_limits() {
    let env = Env::new("containerd");
    let text =
        fs::read_to_string(fixtures().join("containerd-create-config.json")).expect("read fixture");
    let mut b = env.bundle();
    b.config = serde_json::from_str(&text).expect("fixture is JSON");
    b.set("/root/path", json!(shared_rootfs()));
    // Cgroup placement and resources belong to the cgroup issue's tests;
    // everything else is what containerd sends.
    b.remove("/linux/cgroupsPath");
    b.remove("/linux/resources");
    b.env(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    b.sh("cat /proc/$$/status; echo ---; cat /proc/$$/limits; echo ---; cat /proc/self/mountinfo; echo ---; cat /proc/timer_list | wc -c; stat -c %a /dev/shm");
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(parts.len(), 4, "{out}");
    let (status, limits, mountinfo) = (&parts[0], &parts[1], &parts[2]);

    let caps: Vec<String> = b
        .get("/process/capabilities/bounding")
        .as_array()
        .expect("bounding")
        .iter()
        .map(|c| c.as_str().expect("cap name").to_string())
        .collect();
    for f in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(cap_field(status, f), cap_mask(&caps), "{f}");
    }
    assert_eq!(cap_field(status, "CapInh"), 0);
    assert_eq!(cap_field(status, "CapAmb"), 0);
    assert_eq!(status_field(status, "NoNewPrivs"), "1");
    assert_eq!(status_field(status, "Groups"), "0", "additionalGids [0]");
    assert_eq!(
        limit(limits, "Max open files"),
        ("1024".into(), "1024".into())
    );

    let mounts = parse_mountinfo(mountinfo);
    let expect = |at: &str, fstype: &str, opts: &[&str]| {
        let m = mount_at(&mounts, at);
        assert_eq!(m.fstype, fstype, "{at}: {m:?}");
        for o in opts {
            assert!(m.has(o), "{at} lacks {o}: {m:?}");
        }
    };
    expect("/proc", "proc", &["nosuid", "nodev", "noexec"]);
    expect("/dev", "tmpfs", &["nosuid", "mode=755", "size=65536k"]);
    expect(
        "/dev/pts",
        "devpts",
        &["nosuid", "noexec", "ptmxmode=666", "mode=620", "gid=5"],
    );
    // tmpfs does not list its default mode (1777); a stat below checks it.
    expect(
        "/dev/shm",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "size=65536k"],
    );
    assert_eq!(
        mount_at(&mounts, "/dev/shm").source,
        "shm",
        "the mount's source names it"
    );
    expect("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]);
    expect("/sys", "sysfs", &["ro", "nosuid", "noexec", "nodev"]);
    expect("/run", "tmpfs", &["nosuid", "mode=755", "size=65536k"]);
    // strictatime: neither relatime nor noatime.
    let dev = mount_at(&mounts, "/dev");
    assert!(
        !dev.has("relatime") && !dev.has("noatime"),
        "/dev is not strictatime: {dev:?}"
    );
    // containerd's readonlyPaths and maskedPaths.
    for p in ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"] {
        assert!(mount_at(&mounts, p).has("ro"), "{p} is not read-only");
    }
    assert_eq!(
        parts[3], "0\n1777",
        "masked /proc/timer_list is empty; /dev/shm has mode 1777"
    );
}
