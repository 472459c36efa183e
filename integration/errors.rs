//! Bad input: every case fails with a clear message and leaves nothing
//! behind (no state under --root, no process, no mount).

use crate::harness::*;
use serde_json::json;
use std::fs;

/// `brig create`, called as containerd calls it (with a JSON log), must
/// fail with every needle both on stderr and in the log's last error line,
/// and leave nothing behind.
fn create_fails(env: &Env, b: &Bundle, id: &str, needles: &[&str]) {
    let log = env.dir.join(format!("{id}.log"));
    let out = env
        .brig()
        .global("--log")
        .global(&log)
        .global("--log-format=json")
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(id)
        .run();
    assert!(!out.success(), "create should have failed: {out}");
    let logged = last_logged_error(&log);
    for needle in needles {
        assert!(
            out.stderr_text().contains(needle),
            "stderr should contain {needle:?}: {out}"
        );
        assert!(
            logged.contains(needle),
            "the logged error should contain {needle:?}: {logged}"
        );
    }
    env.assert_nothing_left_behind(needles[0]);
}

/// A valid bundle with its own rootfs (so any leaked mount names the test's
/// directory), given a chance to be broken by `edit`.
fn broken_bundle(env: &Env, edit: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = env.bundle_with_private_rootfs();
    b.args(&["true"]);
    edit(&mut b);
    b.write();
    b
}

#[test]
fn missing_config_json() {
    let env = Env::new("noconfig");
    let b = broken_bundle(&env, |_| {});
    fs::remove_file(b.dir.join("config.json")).expect("remove config.json");
    create_fails(&env, &b, &env.id(), &["config.json"]);
}

#[test]
fn malformed_config_json_names_the_file_and_line() {
    let env = Env::new("malformed");
    let b = broken_bundle(&env, |_| {});
    fs::write(
        b.dir.join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {,\n}\n",
    )
    .expect("write malformed config.json");
    create_fails(&env, &b, &env.id(), &["config.json", "line 3"]);
}

#[test]
fn wrongly_typed_field_names_its_json_path() {
    let env = Env::new("wrongtype");
    let b = broken_bundle(&env, |b| {
        b.set("/process/user/uid", json!("zero"));
    });
    create_fails(&env, &b, &env.id(), &["process.user.uid"]);
}

#[test]
fn missing_rootfs_is_named() {
    let env = Env::new("norootfs");
    let b = broken_bundle(&env, |b| {
        b.set("/root/path", json!("no-such-rootfs"));
    });
    create_fails(&env, &b, &env.id(), &["no-such-rootfs"]);
}

#[test]
fn missing_executable_is_worded_like_runc() {
    // Docker maps exactly this text to exit code 127.
    let env = Env::new("noexec");
    let b = broken_bundle(&env, |b| {
        b.args(&["/nonexistent"]);
    });
    create_fails(
        &env,
        &b,
        &env.id(),
        &["exec: \"/nonexistent\": stat /nonexistent: no such file or directory"],
    );
}

#[test]
fn executable_not_in_path_is_worded_like_runc() {
    let env = Env::new("notinpath");
    let b = broken_bundle(&env, |b| {
        b.args(&["no-such-command"]);
    });
    create_fails(
        &env,
        &b,
        &env.id(),
        &["exec: \"no-such-command\": executable file not found in $PATH"],
    );
}

#[test]
fn run_of_a_missing_executable_fails_and_cleans_up() {
    let env = Env::new("runnoexec");
    let b = broken_bundle(&env, |b| {
        b.args(&["/nonexistent"]);
    });
    let id = env.id();
    let out = env
        .brig()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr_text().contains("exec: \"/nonexistent\""),
        "{out}"
    );
    env.assert_nothing_left_behind("run of a missing executable");
}

#[test]
fn relative_cwd_is_refused() {
    let env = Env::new("relcwd");
    let b = broken_bundle(&env, |b| {
        b.set("/process/cwd", json!("tmp"));
    });
    create_fails(&env, &b, &env.id(), &["cwd"]);
}

#[test]
fn empty_args_are_refused() {
    let env = Env::new("noargs");
    let b = broken_bundle(&env, |b| {
        b.set("/process/args", json!([]));
    });
    create_fails(&env, &b, &env.id(), &["args"]);
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let env = Env::new("noconsole");
    let b = broken_bundle(&env, |b| {
        b.set("/process/terminal", json!(true));
    });
    create_fails(&env, &b, &env.id(), &["console"]);
}

/// The test directory's entries, minus captured output files and --root
/// (which brig may create), sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list the test directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("out") || n.starts_with("err") || n == "r"))
        .collect();
    names.sort();
    names
}

#[test]
fn invalid_ids_are_refused_without_touching_anything() {
    let env = Env::new("badids");
    let b = broken_bundle(&env, |_| {});
    // `.` and `..` name --root itself and its parent: a live container there must survive them.
    let mut keeper = env.bundle();
    keeper.args(&["sleep", "1000"]);
    let keeper_id = env.id();
    env.create(&keeper, &keeper_id).ok();
    let keeper_pid = env.state(&keeper_id)["pid"].as_i64().expect("keeper pid") as i32;
    let before = listing(&env.dir);
    for id in ["a/b", "..", ".", "bad\u{1}id", "new\nline", ""] {
        let out = env
            .brig()
            .args(["create", "--bundle"])
            .arg(&b.dir)
            .arg(id)
            .run();
        assert!(!out.success(), "id {id:?} was accepted: {out}");
        assert!(
            out.stderr_text().to_lowercase().contains("invalid"),
            "the error for id {id:?} should say it is invalid: {out}"
        );
        let states: Vec<_> = fs::read_dir(&env.root)
            .expect("list --root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            states,
            std::slice::from_ref(&keeper_id),
            "state left by id {id:?}"
        );
        poll_until(DEADLINE, &format!("no process left by id {id:?}"), || {
            tagged_processes(&env.tag).iter().all(|p| *p == keeper_pid)
        });
        assert!(
            mounts_mentioning(&env.dir).is_empty(),
            "mount left by id {id:?}"
        );
        let _ = env.brig().args(["delete", "--force", id]).run();
        assert_eq!(
            env.status(&keeper_id),
            "created",
            "create/delete of id {id:?} hurt another container"
        );
        assert!(
            b.dir.join("config.json").is_file(),
            "delete --force {id:?} removed the bundle"
        );
        assert_eq!(
            listing(&env.dir),
            before,
            "delete --force {id:?} changed the test directory"
        );
    }
}

#[test]
fn unknown_capability_is_only_a_warning() {
    let env = Env::new("unknowncap");
    let mut b = env.bundle();
    let set = ["CAP_KILL", "CAP_NOT_A_THING"];
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    b.sh("cat /proc/$$/status");
    let out = env.run(&b).ok();
    assert_eq!(
        cap_field(&out.stdout, "CapBnd"),
        cap_mask(&["CAP_KILL"]),
        "{out}"
    );
    assert!(
        out.stderr.contains("CAP_NOT_A_THING"),
        "the warning should name the capability: {out}"
    );
}
