//! create / start / run / state / kill / delete / list, and the exact
//! behaviours containerd, Docker and podman rely on.

use crate::harness::*;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn canonical(p: &Path) -> String {
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn create_start_and_exit_go_created_running_stopped() {
    let env = Env::new("states");
    let comm = env.mkdir("comm");
    // A private rootfs named by a relative root.path, as engines send it.
    let mut b = env.bundle_with_private_rootfs();
    b.bind(&comm, "/mnt", &["rbind", "rw"]);
    b.set("/annotations", json!({"org.example.test": "yes"}));
    // The process announces it started and then waits for the test's go.
    b.sh("echo started > /mnt/started; while [ ! -e /mnt/go ]; do sleep 0.02; done; echo bye");
    let id = env.id();
    let pid_file = env.dir.join("init.pid");
    b.write();
    let created = env
        .brig()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .run()
        .ok();

    let st = env.state(&id);
    assert_eq!(st["status"], "created", "{st:#}");
    assert_eq!(st["id"], id.as_str(), "{st:#}");
    let pid = st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("pid is not a number: {st:#}")) as i32;
    assert_eq!(
        pid,
        read_pid_file(&pid_file),
        "state pid and --pid-file differ"
    );
    assert!(alive(pid), "init {pid} of a created container is not alive");
    assert_eq!(st["bundle"], canonical(&b.dir).as_str(), "{st:#}");
    assert_eq!(
        st["rootfs"],
        canonical(&b.dir.join("rootfs")).as_str(),
        "{st:#}"
    );
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {st:#}"
    );
    assert_rfc3339_nanos(
        st["created"]
            .as_str()
            .unwrap_or_else(|| panic!("created: {st:#}")),
    );
    assert!(st["owner"].is_string(), "owner must be a string: {st:#}");
    assert_eq!(st["annotations"]["org.example.test"], "yes", "{st:#}");
    assert!(
        !comm.join("started").exists(),
        "the user process ran before start"
    );

    env.brig().args(["start", &id]).run().ok();
    poll_until(DEADLINE, "the process to start", || {
        comm.join("started").exists()
    });
    // It is now blocked waiting for `go`, so it is certainly still running.
    let st = env.state(&id);
    assert_eq!(st["status"], "running", "{st:#}");
    assert_eq!(st["pid"].as_i64(), Some(pid as i64), "{st:#}");

    fs::write(comm.join("go"), "").expect("write go");
    env.wait_status(&id, "stopped");
    let st = env.state(&id);
    // runc reports pid 0 once stopped, so that a recycled pid is never mistaken for the init.
    assert_eq!(st["pid"].as_i64(), Some(0), "{st:#}");
    assert_eq!(
        created.stdout_now(),
        "bye\n",
        "the container's stdout is create's stdout"
    );

    env.brig().args(["delete", &id]).run().ok();
    let gone = env.brig().args(["state", &id]).run();
    assert!(!gone.success(), "state after delete should fail: {gone}");
    assert!(
        !env.root.join(&id).exists(),
        "state directory left after delete"
    );
}

#[test]
fn run_detach_returns_while_the_container_runs() {
    let env = Env::new("detach");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    let pid_file = env.dir.join("pid");
    // `-b` and `--pid-file=` forms on purpose.
    env.brig()
        .args(["run", "--detach", "-b"])
        .arg(&b.dir)
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(&id)
        .run()
        .ok();
    let st = env.state(&id);
    assert_eq!(st["status"], "running", "{st:#}");
    let pid = read_pid_file(&pid_file);
    assert_eq!(st["pid"].as_i64(), Some(pid as i64));
    assert!(alive(pid), "detached init {pid} is not alive");
    // --pid-file holds the host pid of the container's init: pid 1 inside.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    let nspid: Vec<&str> = status_field(&status, "NSpid").split_whitespace().collect();
    assert_eq!(nspid.first().copied(), Some(pid.to_string().as_str()));
    assert_eq!(nspid.last().copied(), Some("1"), "NSpid {nspid:?}");

    env.brig().args(["kill", &id, "KILL"]).run().ok();
    env.wait_status(&id, "stopped");
    env.brig().args(["delete", &id]).run().ok();
}

const SUBREAPER_HELPER: &str = "BRIG_IT_SUBREAPER_HELPER";

/// containerd's shim and conmon are subreapers: the container's init must end
/// up their descendant so they can reap it. The check needs a subreaper
/// caller, and making the whole test process one would hand it every orphan
/// of every parallel test, so a copy of this binary plays the shim.
#[test]
fn init_stays_a_descendant_of_a_subreaper_caller() {
    let exe = std::env::current_exe().expect("path of the test binary");
    let out_path = run_dir().join(format!("subreaper-{}.txt", std::process::id()));
    let out = fs::File::create(&out_path).expect("helper output file");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lifecycle::subreaper_helper",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SUBREAPER_HELPER, "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup output file"))
        .stderr(out)
        .spawn()
        .expect("start the helper");
    let deadline = Instant::now() + DEADLINE * 2;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the helper") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "helper timed out:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "helper failed:\n{text}");
    remove_run_dir_of(child.id());
    let _ = fs::remove_file(&out_path);
    assert!(
        text.contains("1 passed"),
        "the helper test did not run:\n{text}"
    );
}

#[test]
#[ignore = "helper: run in its own process by init_stays_a_descendant_of_a_subreaper_caller"]
fn subreaper_helper() {
    if std::env::var_os(SUBREAPER_HELPER).is_none() {
        return;
    }
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let env = Env::new("subreaper");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    let pid_file = env.dir.join("pid");
    env.brig()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .run()
        .ok();
    let pid = read_pid_file(&pid_file);
    // Whoever parents the init, it must be this process or below it.
    let me = std::process::id() as i32;
    let mut chain = vec![pid];
    let mut p = pid;
    while let Some(parent) = ppid(p) {
        chain.push(parent);
        if parent == me || parent <= 1 {
            break;
        }
        p = parent;
    }
    // The init may now be this process's child: reap it when it dies, as a
    // shim would, so that delete does not wait on a zombie.
    let reaper = std::thread::spawn(move || unsafe {
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0)
    });
    let descendant = chain.contains(&me);
    env.brig().args(["delete", "--force", &id]).run().ok();
    let deadline = Instant::now() + DEADLINE;
    while !reaper.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !reaper.is_finished() {
        // Still alive after delete --force: it is ours, end it so join returns.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = reaper.join();
    assert!(
        descendant,
        "init {pid} escaped the subreaper {me}: parent chain {chain:?}"
    );
}

#[test]
fn delete_of_a_running_container_needs_force() {
    let env = Env::new("delete");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;

    let out = env.brig().args(["delete", &id]).run();
    assert!(
        !out.success(),
        "delete of a running container without --force succeeded: {out}"
    );
    assert_eq!(
        env.status(&id),
        "running",
        "a failed delete must leave the container alone"
    );
    assert!(alive(pid));

    env.brig().args(["delete", "--force", &id]).run().ok();
    poll_until(DEADLINE, "the init to die after delete --force", || {
        !alive(pid)
    });
    assert!(
        !env.brig().args(["state", &id]).run().success(),
        "state after delete --force"
    );
    assert!(
        !env.root.join(&id).exists(),
        "state directory left after delete --force"
    );
}

#[test]
fn delete_force_of_a_missing_container_exits_zero() {
    let env = Env::new("delmissing");
    // containerd calls this after every delete.
    env.brig()
        .args(["delete", "--force", "no-such-container"])
        .run()
        .ok();
    let out = env.brig().args(["delete", "no-such-container"]).run();
    assert!(
        !out.success(),
        "delete without --force of a missing id should fail: {out}"
    );
}

#[test]
fn state_of_a_missing_container_fails() {
    let env = Env::new("statemissing");
    let out = env.brig().args(["state", "no-such-container"]).run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stdout.trim().is_empty(),
        "no state JSON for a missing container: {out}"
    );
}

#[test]
fn create_of_an_existing_id_fails_with_already_exists() {
    let env = Env::new("dupid");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    let id = env.id();
    env.create(&b, &id).ok();
    let pid = env.state(&id)["pid"].as_i64();

    let other = env.bundle();
    other.write();
    env.brig()
        .args(["create", "--bundle"])
        .arg(&other.dir)
        .arg(&id)
        .run()
        .fails_with("already exists");
    let st = env.state(&id);
    assert_eq!(
        st["status"], "created",
        "the first container must be untouched: {st:#}"
    );
    assert_eq!(st["pid"].as_i64(), pid);
    assert_eq!(st["bundle"], canonical(&b.dir).as_str());
}

/// A shell init that reports which signals reach it (an init only receives
/// signals it has a handler for).
const SIGNAL_REPORTER: &str = "trap 'echo got-USR1' USR1; trap 'echo got-USR2' USR2; \
     trap 'echo got-HUP' HUP; trap 'echo got-TERM; exit 0' TERM; \
     sleep 1000 & echo ready; while :; do wait; done";

#[test]
fn kill_takes_signal_numbers_and_names_with_or_without_sig() {
    let env = Env::new("killforms");
    let mut b = env.bundle();
    b.sh(SIGNAL_REPORTER);
    let id = env.id();
    let created = env.create(&b, &id).ok();
    env.brig().args(["start", &id]).run().ok();
    wait_for_content(&created.stdout_path, "ready");

    for (form, want) in [
        ("10", "got-USR1"),
        ("USR2", "got-USR2"),
        ("SIGHUP", "got-HUP"),
    ] {
        env.brig().args(["kill", &id, form]).run().ok();
        wait_for_content(&created.stdout_path, want);
    }
    // No signal given: SIGTERM.
    env.brig().args(["kill", &id]).run().ok();
    wait_for_content(&created.stdout_path, "got-TERM");
    env.wait_status(&id, "stopped");
}

#[test]
fn kill_of_a_stopped_container_fails_with_container_not_running() {
    let env = Env::new("killstopped");
    let mut b = env.bundle();
    b.args(&["true"]);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    env.wait_status(&id, "stopped");
    env.brig()
        .args(["kill", &id, "KILL"])
        .run()
        .fails_with("container not running");
}

#[test]
fn run_exits_137_when_the_container_is_killed() {
    let env = Env::new("kill9");
    let mut b = env.bundle();
    b.sh("echo ready; exec sleep 1000");
    b.write();
    let id = env.id();
    let mut run = env
        .brig()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .spawn();
    run.wait_for_stdout("ready");
    env.brig().args(["kill", &id, "SIGKILL"]).run().ok();
    let out = run.wait();
    assert_eq!(out.code(), Some(128 + libc::SIGKILL), "{out}");
}

#[test]
fn run_forwards_signals_to_the_container() {
    let env = Env::new("forward");
    let mut b = env.bundle();
    b.sh("trap 'echo got-TERM; exit 7' TERM; sleep 1000 & echo ready; while :; do wait; done");
    b.write();
    let id = env.id();
    let mut run = env
        .brig()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .spawn();
    run.wait_for_stdout("ready");
    run.signal(libc::SIGTERM);
    let out = run.wait();
    assert_eq!(
        out.code(),
        Some(7),
        "the container's own exit code after its TERM handler: {out}"
    );
    assert!(out.stdout.contains("got-TERM"), "{out}");
}

fn list_json(env: &Env, format_args: &[&str]) -> Vec<Value> {
    let out = env.brig().arg("list").args(format_args).run().ok();
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("list JSON ({e}): {out}"));
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("list JSON is not an array: {out}"))
}

#[test]
fn list_shows_containers_as_table_json_and_ids() {
    let env = Env::new("list");
    let mut created = env.bundle();
    created.args(&["sleep", "1000"]);
    let a = env.id();
    env.create(&created, &a).ok();
    let mut running = env.bundle();
    running.args(&["sleep", "1000"]);
    running.write();
    let b = env.id();
    env.run_detached(&running, &b);
    let pid_a = env.state(&a)["pid"].as_i64().expect("pid of a");
    let pid_b = env.state(&b)["pid"].as_i64().expect("pid of b");

    let table = env.brig().arg("list").run().ok().stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("a header line")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{table}");
    for (id, pid, status, bundle) in [
        (&a, pid_a, "created", &created.dir),
        (&b, pid_b, "running", &running.dir),
    ] {
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&id.as_str()))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert_eq!(row.len(), 6, "{table}");
        assert_eq!(row[1], pid.to_string(), "{table}");
        assert_eq!(row[2], status, "{table}");
        assert_eq!(row[3], canonical(bundle), "{table}");
        assert_rfc3339_nanos(row[4]);
        assert_eq!(row[5], "root", "{table}");
    }

    for args in [&["--format", "json"][..], &["--format=json"][..]] {
        let items = list_json(&env, args);
        assert_eq!(items.len(), 2, "{items:#?}");
        for (id, pid, status) in [(&a, pid_a, "created"), (&b, pid_b, "running")] {
            let item = items
                .iter()
                .find(|i| i["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} missing from {items:#?}"));
            assert_eq!(item["pid"].as_i64(), Some(pid), "{item:#}");
            assert_eq!(item["status"], status, "{item:#}");
            assert!(
                item["bundle"].is_string() && item["rootfs"].is_string(),
                "{item:#}"
            );
            assert_eq!(item["owner"], "root", "{item:#}");
            assert_rfc3339_nanos(item["created"].as_str().expect("created"));
            assert!(item["ociVersion"].is_string(), "{item:#}");
        }
    }

    let quiet = env.brig().args(["list", "-q"]).run().ok().stdout;
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(ids, want, "list -q prints one id per line and nothing else");

    env.brig().args(["delete", "--force", &a]).run().ok();
    let quiet = env.brig().args(["list", "-q"]).run().ok().stdout;
    assert_eq!(quiet.trim(), b, "a deleted container is no longer listed");
}

/// Makes the kernel hand out `pid` to a process this test starts, by
/// setting ns_last_pid just below it. Other processes forking at the same
/// moment can win the race, so it retries; None if `pid` never came back.
fn impostor_at(pid: i32) -> Option<std::process::Child> {
    for _ in 0..50 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sleep");
        if child.id() as i32 == pid {
            return Some(child);
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        if alive(pid) {
            // Someone else's process took it; that is not ours to use.
            return None;
        }
    }
    None
}

#[test]
fn a_recycled_pid_does_not_revive_a_stopped_container() {
    let env = Env::new("pidreuse");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    env.brig().args(["kill", &id, "KILL"]).run().ok();
    // Until the pid is reaped it cannot be reused.
    poll_until(DEADLINE, "the killed init to be reaped", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    let Some(mut impostor) = impostor_at(pid) else {
        // The machine was too busy to get the pid back; nothing to judge.
        eprintln!("skipped: pid {pid} could not be recycled");
        return;
    };
    let st = env.state(&id);
    let kill = env.brig().args(["kill", &id, "KILL"]).run();
    // Had brig signalled it, SIGKILL would be pending or already done its work.
    let kill_bit = 1u64 << (libc::SIGKILL - 1);
    let pending = fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|st| {
            ["SigPnd", "ShdPnd"]
                .iter()
                .any(|f| u64::from_str_radix(status_field(&st, f), 16).unwrap_or(0) & kill_bit != 0)
        })
        .unwrap_or(true);
    let impostor_survived = matches!(impostor.try_wait(), Ok(None)) && !pending;
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(
        st["status"], "stopped",
        "a new process at pid {pid} made the container look alive: {st:#}"
    );
    assert!(
        impostor_survived,
        "brig kill signalled an unrelated process that reused pid {pid}"
    );
    assert!(
        !kill.success(),
        "kill of a stopped container succeeded: {kill}"
    );
}

#[test]
fn state_read_concurrently_with_start_is_never_torn() {
    let env = Env::new("concurrent");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    let id = env.id();
    env.create(&b, &id).ok();
    let readers: Vec<Running> = (0..8)
        .map(|_| env.brig().args(["state", &id]).spawn())
        .collect();
    let start = env.brig().args(["start", &id]).spawn();
    let more: Vec<Running> = (0..8)
        .map(|_| env.brig().args(["state", &id]).spawn())
        .collect();
    start.wait().ok();
    for r in readers.into_iter().chain(more) {
        let out = r.wait().ok();
        let st: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("torn state ({e}): {out}"));
        assert!(
            st["status"] == "created" || st["status"] == "running",
            "{st:#}"
        );
        assert_eq!(st["id"], id.as_str());
    }
    assert_eq!(env.status(&id), "running");
}

#[test]
fn run_removes_the_container_once_it_exits() {
    // `run` without --detach is create + start + wait + delete, as in runc.
    let env = Env::new("runcleanup");
    let mut b = env.bundle();
    b.sh("exit 3");
    let out = env.run(&b);
    assert_eq!(out.code(), Some(3), "{out}");
    env.assert_nothing_left_behind("a finished run");
}

#[test]
fn start_only_starts_a_created_container() {
    let env = Env::new("startonce");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    let id = env.id();
    env.create(&b, &id).ok();
    env.brig().args(["start", &id]).run().ok();
    let again = env.brig().args(["start", &id]).run();
    assert!(
        !again.success(),
        "start of a running container succeeded: {again}"
    );
    env.brig().args(["kill", &id, "KILL"]).run().ok();
    env.wait_status(&id, "stopped");
    let stopped = env.brig().args(["start", &id]).run();
    assert!(
        !stopped.success(),
        "start of a stopped container succeeded: {stopped}"
    );
    let missing = env.brig().args(["start", "no-such-container"]).run();
    assert!(
        !missing.success(),
        "start of a missing container succeeded: {missing}"
    );
}

#[test]
fn delete_of_a_created_container_needs_no_force() {
    // runc deletes (kills) a container that was created but never started.
    let env = Env::new("delcreated");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    let id = env.id();
    env.create(&b, &id).ok();
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    env.brig().args(["delete", &id]).run().ok();
    poll_until(DEADLINE, "the created init to die", || !alive(pid));
    env.assert_nothing_left_behind("delete of a created container");
}

#[test]
fn stdio_is_the_callers_without_a_terminal() {
    let env = Env::new("stdio");
    let mut b = env.bundle();
    b.sh("cat; echo to-stderr >&2");
    b.write();
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    std::io::Write::write_all(&mut writer, b"through a pipe\n").expect("write to the pipe");
    drop(writer);
    let id = env.id();
    let out = env
        .brig()
        .stdin(reader)
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    assert_eq!(
        out.stdout, "through a pipe\n",
        "stdin (a pipe) reaches the container, stdout (a file) comes back"
    );
    assert!(
        out.stderr.ends_with("to-stderr\n"),
        "stderr (a file) comes back: {out}"
    );
}

#[test]
fn kill_of_a_created_container_stops_it() {
    // containerd kills containers that failed between create and start.
    let env = Env::new("killcreated");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    let id = env.id();
    env.create(&b, &id).ok();
    env.brig().args(["kill", &id, "9"]).run().ok();
    env.wait_status(&id, "stopped");
    env.brig().args(["delete", &id]).run().ok();
    env.assert_nothing_left_behind("kill and delete of a created container");
}
