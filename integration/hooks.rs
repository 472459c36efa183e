//! OCI hooks, run with real containers: each kind at its point, in its
//! namespaces, with its argv, env and state; failures, timeouts; and the
//! features document, checked against what brig really does.

use crate::harness::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook script that appends one JSON-ish record per call to `log`:
/// kind, argv0, an env var, the state's status and pid, its mount namespace,
/// and fails (exit 7, a message on stderr) when its kind is `$FAIL`.
fn hook_script(dir: &Path) -> PathBuf {
    let script = dir.join("hook.sh");
    fs::write(
        &script,
        r#"#!/bin/sh
kind=$1
state=$(cat)
status=$(echo "$state" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
argv0=$(tr '\0' '\n' < /proc/$$/cmdline | head -n 1)
echo "$kind $argv0 $HOOK_VAR $status $pid $(readlink /proc/self/ns/mnt) $(ls /proc/self/fd | wc -l)" >> "$LOG"
[ "$kind" = "$FAIL" ] && { echo "hook $kind says no" >&2; exit 7; }
[ "$kind" = "$SLOW" ] && sleep 30
exit 0
"#,
    )
    .expect("write hook script");
    let mut perm = fs::metadata(&script).expect("stat hook").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).expect("chmod hook");
    script
}

/// The argv[0] each hook gets. startContainer runs inside the container,
/// where /bin/sh is busybox, which picks its applet by argv[0].
fn argv0(kind: &str) -> &'static str {
    if kind == "startContainer" {
        "sh"
    } else {
        "my-hook-argv0"
    }
}

/// A bundle with one hook of every kind; the hook directory is bound into
/// the container so that createContainer and startContainer find the script.
fn hooked_bundle(env: &Env, fail: &str, slow: &str) -> (Bundle, PathBuf) {
    let dir = env.mkdir("hooks");
    let script = hook_script(&dir);
    let log = dir.join("log");
    let mut b = env.bundle();
    b.bind(&dir, dir.to_str().expect("utf-8 path"), &["bind"]);
    let hook = |kind: &str| {
        // The hook is the shell running the script, so that argv[0] is
        // observable (a #! script's argv[0] is replaced by the kernel).
        json!([{
            "path": "/bin/sh",
            "args": [argv0(kind), script, kind],
            "env": [format!("LOG={}", log.display()), "HOOK_VAR=hello", format!("FAIL={fail}"), format!("SLOW={slow}")],
            "timeout": 2
        }])
    };
    let hooks: serde_json::Map<String, Value> =
        KINDS.iter().map(|k| (k.to_string(), hook(k))).collect();
    b.set("/hooks", Value::Object(hooks));
    (b, log)
}

fn records(log: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect()
}

#[test]
fn every_hook_kind_runs_in_order_with_its_args_env_state_and_namespace() {
    let env = Env::new("hooks-all");
    let (mut b, log) = hooked_bundle(&env, "none", "none");
    b.args(&["sleep", "1"]);
    env.run_ok(&b);
    let recs = records(&log);
    let kinds: Vec<&str> = recs.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, KINDS, "hooks ran out of order: {recs:?}");
    let host_mnt = fs::read_link("/proc/self/ns/mnt").expect("own mnt ns");
    let host_mnt = host_mnt.to_string_lossy();
    for r in &recs {
        let in_container = r[0] == "createContainer" || r[0] == "startContainer";
        // In the container's pid namespace, $$ does not name the hook in the
        // /proc it can see before pivot_root; argv[0] is checked outside.
        if !in_container {
            assert_eq!(r[1], argv0(&r[0]), "args[0] is argv[0]: {r:?}");
        }
        assert_eq!(r[2], "hello", "env reaches the hook: {r:?}");
        // Only stdio (plus ls's own directory fd) is open in a hook.
        assert_eq!(r[6], "4", "a hook got fds beyond stdio: {r:?}");
        assert_eq!(
            r[5] != host_mnt,
            in_container,
            "{} ran in the wrong mount namespace: {r:?}",
            r[0]
        );
    }
    // The state on stdin names the init's host pid while it lives.
    let pid = &recs[0][4];
    assert!(
        pid.parse::<u32>().is_ok_and(|p| p > 1),
        "prestart state pid: {recs:?}"
    );
    assert_eq!(recs[0][3], "creating");
    assert_eq!(recs[4][3], "running", "poststart state: {recs:?}");
    assert_eq!(recs[5][3], "stopped", "poststop state: {recs:?}");
    env.assert_nothing_left_behind("hooks ran");
}

#[test]
fn a_failing_creation_hook_fails_create_and_leaves_nothing() {
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let env = Env::new("hooks-fail");
        let (b, log) = hooked_bundle(&env, kind, "none");
        let id = env.id();
        env.create(&b, &id).fails_with(&format!("{kind} hook"));
        let out = env.create(&b, &id);
        assert!(
            out.stderr_text().contains("says no"),
            "the hook's stderr is in the error: {out}"
        );
        let ran: Vec<String> = records(&log).into_iter().map(|r| r[0].clone()).collect();
        assert!(
            !ran.iter().any(|k| k == "startContainer" || k == "poststop"),
            "{kind}: {ran:?}"
        );
        env.assert_nothing_left_behind(&format!("failed {kind} hook"));
    }
}

#[test]
fn a_failing_start_hook_fails_start_and_stops_the_container() {
    for kind in ["startContainer", "poststart"] {
        let env = Env::new("hooks-start");
        let (mut b, _log) = hooked_bundle(&env, kind, "none");
        b.args(&["sleep", "30"]);
        let id = env.id();
        env.create(&b, &id).ok();
        env.brig()
            .args(["start", &id])
            .run()
            .fails_with(&format!("{kind} hook"));
        env.wait_status(&id, "stopped");
        env.brig().args(["delete", &id]).run().ok();
        env.assert_nothing_left_behind(&format!("failed {kind} hook"));
    }
}

#[test]
fn a_failing_poststop_hook_is_only_a_warning() {
    let env = Env::new("hooks-stop");
    let (b, log) = hooked_bundle(&env, "poststop", "none");
    let out = env.run(&b);
    assert!(out.success(), "run must succeed: {out}");
    assert!(
        out.stderr_text().contains("poststop hook"),
        "the warning names the hook: {out}"
    );
    assert_eq!(
        records(&log).last().map(|r| r[0].clone()).as_deref(),
        Some("poststop")
    );
    env.assert_nothing_left_behind("poststop warning");
}

#[test]
fn a_hook_that_runs_over_its_timeout_is_killed_and_reported() {
    let env = Env::new("hooks-slow");
    let (b, _log) = hooked_bundle(&env, "none", "createRuntime");
    let id = env.id();
    env.create(&b, &id).fails_with("timed out");
    env.assert_nothing_left_behind("hook timeout");
}

#[test]
fn docker_proc_pid_exe_hook_form_runs() {
    // Docker's --network none adds `/proc/<dockerd pid>/exe libnetwork-setkey ...`:
    // the path is a magic link to a running program, here a shell we start.
    let env = Env::new("hooks-exe");
    let dir = env.mkdir("exe");
    let marker = dir.join("ran");
    let mut holder = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 30"])
        .spawn()
        .expect("start a long-lived shell");
    let mut b = env.bundle();
    b.set(
        "/hooks",
        json!({ "prestart": [{
            "path": format!("/proc/{}/exe", holder.id()),
            "args": ["sh", "-c", format!("cat > {}", marker.display())]
        }]}),
    );
    env.run_ok(&b);
    let _ = holder.kill();
    let _ = holder.wait();
    let state: Value =
        serde_json::from_str(&fs::read_to_string(&marker).expect("hook ran")).expect("state JSON");
    assert_eq!(state["status"], "creating");
    assert!(state["bundle"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn features_parse_and_every_advertised_item_works() {
    let env = Env::new("features");
    let out = env.brig().arg("features").run().ok();
    let doc: Value = serde_json::from_str(&out.stdout).expect("features JSON");
    let _typed: oci_spec::runtime::Features =
        serde_json::from_value(doc.clone()).expect("oci-spec features type");
    assert_eq!(doc["hooks"], json!(KINDS));
    // Every namespace advertised can be created: one container with all of them.
    let mut b = env.bundle();
    let namespaces: Vec<String> = doc["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    for ns in &namespaces {
        if !b.namespace_types().contains(ns) {
            b.namespace(ns, None);
        }
    }
    if namespaces.iter().any(|n| n == "user") {
        b.set(
            "/linux/uidMappings",
            json!([{ "containerID": 0, "hostID": 0, "size": 65536 }]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{ "containerID": 0, "hostID": 0, "size": 65536 }]),
        );
    }
    env.run_ok(&b);
    // Every mount option advertised is accepted on a real mount. Options that
    // make a mount of their own kind are tried on a bind, the rest on a tmpfs.
    let options: Vec<String> = doc["mountOptions"]
        .as_array()
        .expect("mountOptions")
        .iter()
        .filter_map(|o| o.as_str().map(String::from))
        .collect();
    let mut b = env.bundle();
    let src = env.mkdir("bindsrc");
    for (i, opt) in options.iter().enumerate() {
        let dest = format!("/mnt/opt{i}");
        let bind_kind = opt.starts_with('r')
            && opt != "remount"
            && opt != "relatime"
            && opt != "rw"
            && opt != "ro";
        if opt == "remount" {
            continue; // remount of a mount that does not exist yet has no meaning
        }
        if bind_kind || opt == "bind" || opt == "rbind" {
            b.bind(&src, &dest, &["rbind", opt]);
        } else {
            b.tmpfs(&dest, &[opt]);
        }
    }
    env.run_ok(&b);
    // Every seccomp action advertised runs in a container.
    for action in doc["linux"]["seccomp"]["actions"]
        .as_array()
        .expect("actions")
    {
        let action = action.as_str().expect("action name");
        if action == "SCMP_ACT_NOTIFY" {
            continue; // needs an agent: the seccomp suite covers it
        }
        let mut b = env.bundle();
        b.set(
            "/linux/seccomp",
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{ "names": ["getpgid"], "action": action }] }),
        );
        b.args(&["true"]);
        env.run_ok(&b);
    }
    env.assert_nothing_left_behind("features");
}
