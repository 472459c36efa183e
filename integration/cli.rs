//! The command line itself: --version, logging, spec, global flags and the
//! flag spellings engines use.

use crate::harness::*;
use serde_json::Value;
use std::fs;

#[test]
fn version_prints_runcs_three_lines() {
    let env = Env::new("version");
    let out = env.brig().without_root().arg("--version").run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // dockerd parses this shape.
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        format!("brig version {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        lines[1]
            .strip_prefix("commit: ")
            .is_some_and(|c| !c.trim().is_empty()),
        "{out}"
    );
    let spec = lines[2]
        .strip_prefix("spec: ")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(spec.starts_with("1."), "spec version {spec:?}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let env = Env::new("logjson");
    let empty = env.mkdir("empty-bundle");
    let log = |n: usize| env.dir.join(format!("log{n}.json"));
    // podman sends `--log-format=json`, containerd `--log-format json`.
    let spellings: [Vec<String>; 3] = [
        vec![
            "--log".into(),
            log(0).display().to_string(),
            "--log-format=json".into(),
        ],
        vec![
            "--log".into(),
            log(1).display().to_string(),
            "--log-format".into(),
            "json".into(),
        ],
        vec![
            format!("--log={}", log(2).display()),
            "--log-format".into(),
            "json".into(),
        ],
    ];
    for (n, flags) in spellings.iter().enumerate() {
        let mut call = env.brig();
        for f in flags {
            call = call.global(f);
        }
        let id = env.id();
        let out = call.args(["create", "--bundle"]).arg(&empty).arg(&id).run();
        assert!(!out.success(), "create of an empty bundle succeeded: {out}");
        let lines = json_log_lines(&log(n));
        // containerd reports the last error line of this file.
        let last_error = lines
            .iter()
            .rev()
            .find(|l| l["level"] == "error")
            .unwrap_or_else(|| panic!("no error line with {flags:?}: {lines:#?}"));
        assert!(
            last_error["msg"]
                .as_str()
                .is_some_and(|m| m.contains("config.json")),
            "{last_error}"
        );
        assert!(
            last_error["time"]
                .as_str()
                .is_some_and(|t| t.len() >= 20 && t.as_bytes()[10] == b'T'),
            "time is not RFC 3339: {last_error}"
        );
    }
}

#[test]
fn log_defaults_to_text() {
    let env = Env::new("logtext");
    let empty = env.mkdir("empty-bundle");
    let log = env.dir.join("log.txt");
    let id = env.id();
    let out = env
        .brig()
        .global("--log")
        .global(&log)
        .args(["create", "--bundle"])
        .arg(&empty)
        .arg(&id)
        .run();
    assert!(!out.success(), "{out}");
    let text = fs::read_to_string(&log).expect("the text log was written");
    assert!(
        text.contains("config.json") && text.contains("error"),
        "text log: {text}"
    );
    assert!(
        !text.trim_start().starts_with('{'),
        "text log looks like JSON: {text}"
    );
}

#[test]
fn spec_writes_a_runc_like_default_config() {
    let env = Env::new("spec");
    let dir = env.mkdir("bundle");
    env.brig().args(["spec", "--bundle"]).arg(&dir).run().ok();
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).expect("config.json"))
            .expect("spec's config.json is JSON");
    assert!(
        config["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{config:#}"
    );
    assert_eq!(config["process"]["terminal"], true);
    assert_eq!(config["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(config["root"]["path"], "rootfs");
    let ns: Vec<&str> = config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "default namespaces {ns:?} lack {want}");
    }
    assert!(
        !ns.contains(&"user"),
        "a rootful default has no user namespace"
    );
    // The bundle is the current directory when no --bundle is given.
    let cwd = env.mkdir("cwd-bundle");
    env.brig().arg("spec").current_dir(&cwd).run().ok();
    assert!(
        cwd.join("config.json").is_file(),
        "spec without --bundle writes to the current directory"
    );

    let rootless = env.mkdir("rootless");
    env.brig()
        .args(["spec", "--rootless", "-b"])
        .arg(&rootless)
        .run()
        .ok();
    let config: Value = serde_json::from_str(
        &fs::read_to_string(rootless.join("config.json")).expect("config.json"),
    )
    .expect("JSON");
    let ns: Vec<&str> = config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(
        ns.contains(&"user"),
        "rootless spec has a user namespace: {ns:?}"
    );
    assert!(
        config["linux"]["uidMappings"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "rootless spec maps uids: {config:#}"
    );
}

#[test]
fn global_flags_engines_pass_are_accepted() {
    let env = Env::new("globals");
    // containerd and podman pass these; both spellings of a value must work.
    // `list` touches no cgroup, so even a runtime without a systemd cgroup
    // driver has no reason to refuse --systemd-cgroup there.
    env.brig()
        .global("--debug")
        .global("--rootless")
        .global("false")
        .global("--systemd-cgroup")
        .args(["list", "-q"])
        .run()
        .ok();
    env.brig()
        .global("--rootless=auto")
        .args(["list", "--format", "table"])
        .run()
        .ok();
    let out = env
        .brig()
        .without_root()
        .global(format!("--root={}", env.root.display()))
        .arg("list")
        .run()
        .ok();
    assert!(out.stdout.starts_with("ID"), "{out}");
}

#[test]
fn bundle_defaults_to_the_current_directory() {
    let env = Env::new("cwdbundle");
    let mut b = env.bundle();
    b.sh("echo from-cwd-bundle");
    b.write();
    let id = env.id();
    let out = env.brig().args(["run", &id]).current_dir(&b.dir).run().ok();
    assert_eq!(out.stdout, "from-cwd-bundle\n");
}

#[test]
fn no_pivot_runs_the_container_with_chroot() {
    let env = Env::new("nopivot");
    let mut b = env.bundle();
    b.sh("echo $$; ls /bin/busybox");
    b.write();
    let id = env.id();
    let out = env
        .brig()
        .args(["run", "--no-pivot", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    assert_eq!(out.stdout, "1\n/bin/busybox\n");
}
