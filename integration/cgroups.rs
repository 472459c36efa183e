//! Cgroups: where a container is placed, limits that bite, pause and resume,
//! update, ps, kill --all, events, and that neither `delete` nor a failed
//! create leaves a cgroup directory behind; plus the memory footprint.
//!
//! Written against every layout brig supports: v1 and hybrid hosts (v1
//! controllers at /sys/fs/cgroup/CONTROLLER, maybe a cgroup2 at
//! /sys/fs/cgroup/unified) and pure cgroup v2 (the test VM), where the same
//! facts are read from the v2 files. Containers without a cgroupsPath land in
//! brig's fixed parent, `/brig/ID`.

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

const CGROUP_FS: &str = "/sys/fs/cgroup";

// ---------------------------------------------------------------------------
// Reading the host's cgroups
// ---------------------------------------------------------------------------

/// True on a pure cgroup v2 host (cgroup2 mounted at /sys/fs/cgroup itself).
fn pure_v2() -> bool {
    Path::new(CGROUP_FS).join("cgroup.controllers").exists()
}

/// Mount points of every cgroup hierarchy of the host: each v1 controller,
/// named v1 hierarchies such as name=systemd, and cgroup2.
fn hierarchy_roots() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mut roots: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .collect();
    roots.sort();
    roots.dedup();
    assert!(!roots.is_empty(), "no cgroup hierarchy is mounted");
    roots
}

fn rel(cg: &str) -> &str {
    cg.trim_start_matches('/')
}

/// The cgroup's directory for `controller` (a v1 controller name; on a pure
/// v2 host every controller shares the one directory).
fn ctl_dir(controller: &str, cg: &str) -> PathBuf {
    if pure_v2() {
        Path::new(CGROUP_FS).join(rel(cg))
    } else {
        Path::new(CGROUP_FS).join(controller).join(rel(cg))
    }
}

/// A cgroup file's content, trimmed.
fn read_cg(controller: &str, cg: &str, file: &str) -> String {
    let path = ctl_dir(controller, cg).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn num(text: &str, what: &str) -> i64 {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {text:?} is not a number: {e}"))
}

/// A "max"-or-number file as bytes (v2), u64::MAX for "max".
fn max_or_num(text: &str, what: &str) -> u64 {
    if text == "max" {
        u64::MAX
    } else {
        num(text, what) as u64
    }
}

/// The memory limit in bytes.
fn memory_limit(cg: &str) -> u64 {
    if pure_v2() {
        max_or_num(&read_cg("memory", cg, "memory.max"), "memory.max")
    } else {
        num(
            &read_cg("memory", cg, "memory.limit_in_bytes"),
            "memory.limit_in_bytes",
        ) as u64
    }
}

/// The memory+swap limit in bytes (what the spec's memory.swap means).
fn memory_swap_limit(cg: &str) -> u64 {
    if pure_v2() {
        let swap = max_or_num(&read_cg("memory", cg, "memory.swap.max"), "memory.swap.max");
        memory_limit(cg).saturating_add(swap)
    } else {
        num(
            &read_cg("memory", cg, "memory.memsw.limit_in_bytes"),
            "memory.memsw.limit_in_bytes",
        ) as u64
    }
}

/// (quota, period) of the CFS bandwidth limit; quota -1 when unlimited.
fn cpu_quota_period(cg: &str) -> (i64, i64) {
    if pure_v2() {
        let max = read_cg("cpu", cg, "cpu.max");
        let (q, p) = max
            .split_once(' ')
            .unwrap_or_else(|| panic!("cpu.max {max:?}"));
        let q = if q == "max" {
            -1
        } else {
            num(q, "cpu.max quota")
        };
        (q, num(p, "cpu.max period"))
    } else {
        (
            num(&read_cg("cpu", cg, "cpu.cfs_quota_us"), "cpu.cfs_quota_us"),
            num(
                &read_cg("cpu", cg, "cpu.cfs_period_us"),
                "cpu.cfs_period_us",
            ),
        )
    }
}

/// The cpu.shares file (v1) or its cpu.weight conversion (v2), and the
/// value `shares` must have become there.
fn cpu_shares_as_written(cg: &str, shares: i64) -> (String, String) {
    if pure_v2() {
        // runc's conversion: 2..262144 onto 1..10000.
        let want = 1 + (shares - 2) * 9999 / 262_142;
        (read_cg("cpu", cg, "cpu.weight"), want.to_string())
    } else {
        (read_cg("cpu", cg, "cpu.shares"), shares.to_string())
    }
}

fn frozen(cg: &str) -> bool {
    if pure_v2() {
        read_cg("freezer", cg, "cgroup.freeze") == "1"
    } else {
        read_cg("freezer", cg, "freezer.state") == "FROZEN"
    }
}

/// `key value` lines (cpu.stat, pids.events, ...).
fn flat(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The cgroup's directories that exist, in every hierarchy.
fn existing_dirs(cg: &str) -> Vec<PathBuf> {
    hierarchy_roots()
        .into_iter()
        .map(|r| r.join(rel(cg)))
        .filter(|d| d.exists())
        .collect()
}

/// Pids in the cgroup, over all hierarchies.
fn procs(cg: &str) -> BTreeSet<i32> {
    existing_dirs(cg)
        .iter()
        .flat_map(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Fails unless no hierarchy has a directory for `cg` (waiting briefly: the
/// kernel may still be tearing down the last process).
fn assert_no_cgroup(cg: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = existing_dirs(cg);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: cgroup directories left behind: {left:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// /proc/PID/cgroup as (hierarchy key, path) pairs; the v2 key is "".
fn proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Removes the given cgroup directories (parents a test made brig create)
/// when dropped; declare it before the Env so that it runs after the
/// containers are gone. Errors are ignored: another run may be using them.
struct RemoveCgroupsOnDrop(Vec<String>);

impl Drop for RemoveCgroupsOnDrop {
    fn drop(&mut self) {
        for cg in &self.0 {
            for root in hierarchy_roots() {
                let _ = fs::remove_dir(root.join(rel(cg)));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

fn default_cgroup(id: &str) -> String {
    format!("/brig/{id}")
}

fn init_pid(env: &Env, id: &str) -> i32 {
    let st = env.state(id);
    st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in state: {st:#}")) as i32
}

/// create + start; returns create's outcome (its stdout file keeps
/// receiving the container's output) and the init's host pid.
fn start(env: &Env, b: &Bundle, id: &str) -> (Outcome, i32) {
    let created = env.create(b, id).ok();
    env.brig().args(["start", id]).run().ok();
    (created, init_pid(env, id))
}

/// `brig run` with a given id, waiting for the container.
fn run_as(env: &Env, b: &Bundle, id: &str) -> Outcome {
    b.write();
    env.register(id);
    env.brig()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(id)
        .run()
}

/// `delete --force`, then no cgroup directory and nothing else may be left.
fn delete_and_check(env: &Env, id: &str, cg: &str) {
    env.brig().args(["delete", "--force", id]).run().ok();
    assert_no_cgroup(cg, &format!("after delete of {id}"));
    env.assert_nothing_left_behind(&format!("after delete of {id}"));
}

fn add_capabilities(b: &mut Bundle, caps: &[&str]) {
    for set in ["bounding", "effective", "permitted"] {
        let pointer = format!("/process/capabilities/{set}");
        let mut list = b.get(&pointer).as_array().cloned().unwrap_or_default();
        list.extend(caps.iter().map(|c| json!(c)));
        b.set(&pointer, Value::Array(list));
    }
}

/// linux.resources as saved in the container's state directory (`state`
/// does not print them; update must record them for later updates).
fn saved_resources(env: &Env, id: &str) -> Value {
    let path = env.root.join(id).join("config.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
    v["linux"]["resources"].clone()
}

// ---------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------

/// Creates `b` as `id` and checks from the host that its init is in `want`
/// in every hierarchy (never under the test runner's own cgroup), that the
/// directories exist and list it, with the resources applied there (on v2
/// the controllers must be enabled down every level brig creates); starts it
/// and checks that inside (a cgroup namespace) it sees itself at `/`;
/// deletes it and checks the cgroup is gone.
fn check_placement(env: &Env, b: &mut Bundle, id: &str, want: &str) {
    b.sh("cat /proc/self/cgroup");
    b.set("/linux/resources/pids", json!({"limit": 10}));
    let created = env.create(b, id).ok();
    assert_eq!(
        read_cg("pids", want, "pids.max"),
        "10",
        "pids.max in {want}"
    );
    let pid = init_pid(env, id);
    let host_view = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroup");
    let own_view = fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
    let own: BTreeMap<String, String> = proc_cgroup(&own_view).into_iter().collect();
    let placed = proc_cgroup(&host_view);
    assert_eq!(
        placed.len(),
        own.len(),
        "the init is not in every hierarchy:\n{host_view}\nthe test runner:\n{own_view}"
    );
    for (key, path) in &placed {
        assert_eq!(
            path, want,
            "hierarchy {key:?}: the init is in {path}, not {want}\n{host_view}"
        );
        if let Some(mine) = own.get(key).filter(|m| *m != "/") {
            assert!(
                !Path::new(path).starts_with(mine),
                "hierarchy {key:?}: the container landed under the test runner's cgroup {mine}"
            );
        }
    }
    for root in hierarchy_roots() {
        let dir = root.join(rel(want));
        let listed = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(
            listed.lines().any(|l| l.trim() == pid.to_string()),
            "{}/cgroup.procs does not list the init {pid}: {listed:?}",
            dir.display()
        );
    }

    env.brig().args(["start", id]).run().ok();
    env.wait_status(id, "stopped");
    let inside = created.stdout_now();
    let seen = proc_cgroup(&inside);
    assert_eq!(
        seen.len(),
        placed.len(),
        "inside, /proc/self/cgroup lists other hierarchies:\n{inside}"
    );
    assert!(
        seen.iter().all(|(_, p)| p == "/"),
        "inside its cgroup namespace the container must see itself at /:\n{inside}"
    );

    env.brig().args(["delete", id]).run().ok();
    assert_no_cgroup(want, "after delete");
    env.assert_nothing_left_behind("after delete");
}

#[test]
fn empty_cgroups_path_places_the_container_in_brig_id() {
    let env = Env::new("cgdefault");
    let mut b = env.bundle();
    b.remove("/linux/cgroupsPath");
    let id = env.id();
    check_placement(&env, &mut b, &id, &default_cgroup(&id));
}

#[test]
fn relative_cgroups_path_goes_under_brig() {
    let _parent = RemoveCgroupsOnDrop(vec!["/brig/it-rel".into()]);
    let env = Env::new("cgrelative");
    let mut b = env.bundle();
    let id = env.id();
    b.set("/linux/cgroupsPath", json!(format!("it-rel/{id}")));
    check_placement(&env, &mut b, &id, &format!("/brig/it-rel/{id}"));
}

#[test]
fn absolute_cgroups_path_is_taken_from_the_hierarchy_roots() {
    let _parent = RemoveCgroupsOnDrop(vec!["/brig-it-abs".into()]);
    let env = Env::new("cgabsolute");
    let mut b = env.bundle();
    let id = env.id();
    let cg = format!("/brig-it-abs/{id}");
    b.set("/linux/cgroupsPath", json!(cg));
    check_placement(&env, &mut b, &id, &cg);
}

#[test]
fn systemd_cgroups_path_is_a_clear_error_and_leaves_nothing() {
    let env = Env::new("cgsystemd");
    let mut b = env.bundle();
    let id = env.id();
    let slice = format!("brigit{}.slice", std::process::id());
    let path = format!("{slice}:brig:{id}");
    b.set("/linux/cgroupsPath", json!(path));
    env.create(&b, &id).fails_with("systemd").fails_with(&path);
    for cg in [
        format!("/{slice}"),
        format!("/{path}"),
        format!("/brig/{path}"),
        default_cgroup(&id),
    ] {
        assert_no_cgroup(&cg, "systemd cgroupsPath");
    }
    env.assert_nothing_left_behind("systemd cgroupsPath");
}

// ---------------------------------------------------------------------------
// Limits that bite
// ---------------------------------------------------------------------------

const MIB: u64 = 1 << 20;

#[test]
fn memory_limit_oom_kills_and_run_exits_137() {
    let env = Env::new("cgoomrun");
    let mut b = env.bundle();
    b.set(
        "/linux/resources/memory",
        json!({"limit": 16 * MIB, "swap": 16 * MIB}),
    );
    // dd fills a 64 MiB buffer: four times the limit.
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let id = env.id();
    let out = run_as(&env, &b, &id);
    assert_eq!(out.code(), Some(137), "expected an OOM kill (137): {out}");
    assert_no_cgroup(&default_cgroup(&id), "after run");
    env.assert_nothing_left_behind("after run");
}

#[test]
fn memory_limit_oom_is_reported_by_the_events_stream() {
    let env = Env::new("cgoomevent");
    let mut b = env.bundle();
    b.set(
        "/linux/resources/memory",
        json!({"limit": 16 * MIB, "swap": 16 * MIB}),
    );
    b.sh("dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd-exit=$?");
    let id = env.id();
    let cg = default_cgroup(&id);
    let created = env.create(&b, &id).ok();
    assert_eq!(memory_limit(&cg), 16 * MIB, "memory limit");
    assert_eq!(memory_swap_limit(&cg), 16 * MIB, "memory+swap limit");

    let mut events = env
        .brig()
        .args(["events", "--interval", "100ms", &id])
        .spawn();
    // The first stats event shows the stream is watching before the OOM.
    events.wait_for_stdout("\"type\":\"stats\"");
    env.brig().args(["start", &id]).run().ok();
    let text = events.wait_for_stdout("\"type\":\"oom\"");
    let oom: Value = text
        .lines()
        .find(|l| l.contains("\"type\":\"oom\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .expect("an oom line");
    assert_eq!(oom["type"], "oom", "{oom}");
    assert_eq!(oom["id"], id.as_str(), "{oom}");

    env.wait_status(&id, "stopped");
    assert!(
        created.stdout_now().contains("dd-exit=137"),
        "dd should have been SIGKILLed: {:?}",
        created.stdout_now()
    );
    let ended = events.wait();
    assert!(
        ended.success(),
        "events must end cleanly once the container stops: {ended}"
    );
    delete_and_check(&env, &id, &cg);
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let env = Env::new("cgpids");
    let mut b = env.bundle();
    b.set("/linux/resources/pids", json!({"limit": 10}));
    // The loop runs in a child shell: a shell that cannot fork gives up.
    // `exec` keeps the init alive without another fork.
    b.sh(
        "sh -c 'for i in $(seq 30); do sleep 1000 & done' 2>&1; echo loop-exit=$?; exec sleep 1000",
    );
    let id = env.id();
    let cg = default_cgroup(&id);
    let created = env.create(&b, &id).ok();
    assert_eq!(read_cg("pids", &cg, "pids.max"), "10");
    env.brig().args(["start", &id]).run().ok();
    let mut highest = 0;
    let deadline = Instant::now() + DEADLINE;
    while !created.stdout_now().contains("loop-exit=") {
        assert!(
            Instant::now() < deadline,
            "the fork loop never ended: {:?}",
            created.stdout_now()
        );
        highest = highest.max(num(&read_cg("pids", &cg, "pids.current"), "pids.current"));
        thread::sleep(Duration::from_millis(2));
    }
    let current = num(&read_cg("pids", &cg, "pids.current"), "pids.current");
    highest = highest.max(current);
    let out = created.stdout_now();
    assert!(
        out.contains("can't fork") || out.contains("Resource temporarily unavailable"),
        "the loop should have failed to fork: {out:?}"
    );
    assert!(highest <= 10, "pids.current reached {highest}");
    assert!(
        procs(&cg).len() <= 10,
        "more than 10 processes: {:?}",
        procs(&cg)
    );
    let events = flat(&read_cg("pids", &cg, "pids.events"));
    assert!(
        events.get("max").is_some_and(|n| *n > 0),
        "pids.events should count refused forks: {events:?}"
    );
    delete_and_check(&env, &id, &cg);
}

#[test]
fn cpu_quota_and_shares_are_written_and_throttle() {
    let env = Env::new("cgcpu");
    let mut b = env.bundle();
    b.set(
        "/linux/resources/cpu",
        json!({"shares": 512, "quota": 10000, "period": 100000}),
    );
    b.sh("while :; do :; done");
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    assert_eq!(cpu_quota_period(&cg), (10000, 100000), "cpu quota, period");
    let (got, want) = cpu_shares_as_written(&cg, 512);
    assert_eq!(got, want, "cpu shares");
    // A busy loop at 10% of a CPU is throttled within the first period.
    let mut stat = BTreeMap::new();
    poll_until(Duration::from_secs(10), "cpu.stat nr_throttled > 0", || {
        stat = flat(&read_cg("cpu", &cg, "cpu.stat"));
        stat.get("nr_throttled").is_some_and(|n| *n > 0)
    });
    delete_and_check(&env, &id, &cg);
}

#[test]
fn device_rules_deny_what_they_do_not_allow() {
    let env = Env::new("cgdevices");
    let mut b = env.bundle();
    add_capabilities(&mut b, &["CAP_MKNOD"]);
    // The spec's deny-all, then one block device allowed for reading.
    b.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 16, "access": "r"}
        ]),
    );
    // 8:0 is denied: EPERM from the devices cgroup. 8:16 is allowed, so the
    // open reaches the kernel, which has no such disk here (ENXIO) or opens it.
    b.sh("echo x > /dev/null && echo null-writable
          mknod /dev/sda b 8 0 && mknod /dev/sdb b 8 16 && echo made
          head -c 0 /dev/sda 2>&1 || true
          head -c 0 /dev/sdb 2>&1; echo sdb-exit=$?");
    let id = env.id();
    let out = run_as(&env, &b, &id).ok().stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("null-writable"), "{out}");
    assert_eq!(
        lines.next(),
        Some("made"),
        "mknod is allowed (c *:* m, b *:* m): {out}"
    );
    assert_eq!(
        lines.next(),
        Some("head: /dev/sda: Operation not permitted"),
        "{out}"
    );
    let rest: Vec<&str> = lines.collect();
    assert!(
        !rest.iter().any(|l| l.contains("Operation not permitted")),
        "the allowed device was refused too: {out}"
    );
    assert!(
        rest.last().is_some_and(|l| l.starts_with("sdb-exit=")),
        "{out}"
    );
    assert_no_cgroup(&default_cgroup(&id), "after run");
    env.assert_nothing_left_behind("after run");
}

#[test]
fn blkio_weight_is_written() {
    let env = Env::new("cgblkio");
    let mut b = env.bundle();
    b.set("/linux/resources/blockIO", json!({"weight": 500}));
    let id = env.id();
    let cg = default_cgroup(&id);
    env.create(&b, &id).ok();
    // BFQ keeps blkio's 10..1000 scale; v2's io.weight has runc's conversion.
    let candidates: &[(&str, &str)] = if pure_v2() {
        &[("io.bfq.weight", "500"), ("io.weight", "4950")]
    } else {
        &[("blkio.weight", "500"), ("blkio.bfq.weight", "500")]
    };
    let dir = ctl_dir("blkio", &cg);
    match candidates.iter().find(|(f, _)| dir.join(f).exists()) {
        None => eprintln!(
            "note: no {:?} in {}: this kernel has no block I/O weight; not checked",
            candidates.iter().map(|c| c.0).collect::<Vec<_>>(),
            dir.display()
        ),
        Some((file, want)) => {
            let text = read_cg("blkio", &cg, file);
            // "500", or "default 500" (and per-device lines after it).
            let first = text.lines().next().unwrap_or_default();
            assert_eq!(
                first.split_whitespace().last(),
                Some(*want),
                "{file}: {text:?}"
            );
        }
    }
    delete_and_check(&env, &id, &cg);
}

// ---------------------------------------------------------------------------
// pause / resume
// ---------------------------------------------------------------------------

fn counter(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("n")).ok()?.trim().parse().ok()
}

#[test]
fn pause_stops_a_counter_and_resume_restarts_it() {
    let env = Env::new("cgpause");
    let comm = env.mkdir("comm");
    let mut b = env.bundle();
    b.bind(&comm, "/mnt", &["rbind", "rw"]);
    b.sh("i=0; while :; do i=$((i+1)); echo $i > /mnt/n; sleep 0.01; done");
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    let mut before = 0;
    poll_until(DEADLINE, "the counter to run", || {
        before = counter(&comm).unwrap_or(before);
        before >= 3
    });

    env.brig().args(["pause", &id]).run().ok();
    assert_eq!(env.status(&id), "paused");
    assert!(frozen(&cg), "the cgroup is not frozen");
    let list = env.brig().args(["list", "--format", "json"]).run().ok();
    let listed: Value = serde_json::from_str(&list.stdout)
        .unwrap_or_else(|e| panic!("list is not JSON ({e}): {list}"));
    let entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} not listed: {listed:#}"));
    assert_eq!(entry["status"], "paused", "{entry:#}");
    let paused_at = fs::read_to_string(comm.join("n")).unwrap_or_default();
    thread::sleep(Duration::from_millis(300));
    let later = fs::read_to_string(comm.join("n")).unwrap_or_default();
    assert_eq!(paused_at, later, "the counter advanced while paused");
    let again = env.brig().args(["pause", &id]).run();
    assert!(!again.success(), "pausing a paused container: {again}");

    env.brig().args(["resume", &id]).run().ok();
    assert_eq!(env.status(&id), "running");
    assert!(!frozen(&cg), "the cgroup is still frozen");
    let last = paused_at.trim().parse().unwrap_or(before).max(before);
    poll_until(DEADLINE, "the counter to advance after resume", || {
        counter(&comm).is_some_and(|n| n > last)
    });
    let again = env.brig().args(["resume", &id]).run();
    assert!(!again.success(), "resuming a running container: {again}");

    // delete --force must be able to kill a paused container.
    env.brig().args(["pause", &id]).run().ok();
    assert_eq!(env.status(&id), "paused");
    delete_and_check(&env, &id, &cg);
}

// ---------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------

#[test]
fn update_changes_live_limits_and_records_them() {
    let env = Env::new("cgupdate");
    let mut b = env.bundle();
    b.set(
        "/linux/resources/memory",
        json!({"limit": 32 * MIB, "swap": 32 * MIB}),
    );
    b.set(
        "/linux/resources/cpu",
        json!({"shares": 512, "quota": 20000, "period": 100000}),
    );
    b.set("/linux/resources/pids", json!({"limit": 20}));
    b.args(&["sleep", "1000"]);
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    assert_eq!(memory_limit(&cg), 32 * MIB);

    // runc's flags.
    env.brig()
        .args(["update", "--memory", "64m", "--pids-limit", "7", &id])
        .run()
        .ok();
    assert_eq!(memory_limit(&cg), 64 * MIB, "memory after --memory 64m");
    assert_eq!(read_cg("pids", &cg, "pids.max"), "7");
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["memory"]["limit"], json!(64 * MIB), "{saved:#}");
    assert_eq!(saved["pids"]["limit"], json!(7), "{saved:#}");
    assert_eq!(saved["cpu"]["shares"], json!(512), "{saved:#}");

    // One of quota and period changes; the other stays.
    env.brig()
        .args(["update", "--cpu-period", "50000", &id])
        .run()
        .ok();
    assert_eq!(
        cpu_quota_period(&cg),
        (20000, 50000),
        "after --cpu-period 50000"
    );
    env.brig()
        .args(["update", "--cpu-quota", "30000", &id])
        .run()
        .ok();
    assert_eq!(
        cpu_quota_period(&cg),
        (30000, 50000),
        "after --cpu-quota 30000"
    );

    // Docker: the whole LinuxResources on stdin, zeros for "leave alone".
    env.brig()
        .args(["update", "--memory", "32m", "--memory-swap", "32m", &id])
        .run()
        .ok();
    assert_eq!(memory_swap_limit(&cg), 32 * MIB);
    let docker = env.dir.join("docker-update.json");
    fs::write(
        &docker,
        r#"{"memory":{"limit":67108864,"reservation":0,"swap":134217728,"kernel":0},"cpu":{"shares":0,"quota":0,"period":0},"blockIO":{"weight":0}}"#,
    )
    .expect("write docker's update json");
    let quota_before = cpu_quota_period(&cg);
    env.brig()
        .args(["update", "-r", "-", &id])
        .stdin(File::open(&docker).expect("open docker's update json"))
        .run()
        .ok();
    assert_eq!(memory_limit(&cg), 64 * MIB, "memory after docker's update");
    assert_eq!(
        memory_swap_limit(&cg),
        128 * MIB,
        "memory+swap after docker's update"
    );
    let (got, want) = cpu_shares_as_written(&cg, 512);
    assert_eq!(got, want, "docker's shares 0 must leave cpu shares alone");
    assert_eq!(
        cpu_quota_period(&cg),
        quota_before,
        "docker's quota/period 0 must leave them alone"
    );
    assert_eq!(read_cg("pids", &cg, "pids.max"), "7");
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["memory"]["limit"], json!(64 * MIB), "{saved:#}");
    assert_eq!(saved["memory"]["swap"], json!(128 * MIB), "{saved:#}");

    // podman: --resources FILE.
    env.brig()
        .args(["update", "--memory", "48m", "--memory-swap", "48m", &id])
        .run()
        .ok();
    assert_eq!(memory_limit(&cg), 48 * MIB);
    let podman = env.dir.join("podman-update.json");
    fs::write(&podman, r#"{"memory":{"limit":67108864,"swap":134217728}}"#)
        .expect("write podman's update json");
    env.brig()
        .arg("update")
        .arg(format!("--resources={}", podman.display()))
        .arg(&id)
        .run()
        .ok();
    assert_eq!(memory_limit(&cg), 64 * MIB, "memory after podman's update");
    assert_eq!(
        memory_swap_limit(&cg),
        128 * MIB,
        "memory+swap after podman's update"
    );
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["memory"]["limit"], json!(64 * MIB), "{saved:#}");
    assert_eq!(saved["memory"]["swap"], json!(128 * MIB), "{saved:#}");

    // -1 lifts the pids limit.
    env.brig()
        .args(["update", "--pids-limit", "-1", &id])
        .run()
        .ok();
    assert_eq!(read_cg("pids", &cg, "pids.max"), "max");
    delete_and_check(&env, &id, &cg);
}

// ---------------------------------------------------------------------------
// ps, kill --all, events --stats
// ---------------------------------------------------------------------------

/// Waits until the cgroup holds exactly `n` processes and returns them.
fn wait_for_procs(cg: &str, n: usize) -> BTreeSet<i32> {
    let mut seen = BTreeSet::new();
    poll_until(DEADLINE, &format!("{n} processes in {cg}"), || {
        seen = procs(cg);
        seen.len() == n
    });
    seen
}

#[test]
fn ps_lists_the_containers_host_pids() {
    let env = Env::new("cgps");
    let mut b = env.bundle();
    b.sh("sleep 1000 & wait");
    let id = env.id();
    let cg = default_cgroup(&id);
    let (_, init) = start(&env, &b, &id);
    let pids = wait_for_procs(&cg, 2);
    let child = *pids
        .iter()
        .find(|p| **p != init)
        .unwrap_or_else(|| panic!("init {init} is not in {pids:?}"));
    assert_eq!(ppid(child), Some(init), "the child's parent");

    let out = env.brig().args(["ps", "--format", "json", &id]).run().ok();
    let listed: Vec<i32> = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("ps --format json is not a list of pids ({e}): {out}"));
    let listed: BTreeSet<i32> = listed.into_iter().collect();
    assert_eq!(listed, pids, "{out}");

    let out = env.brig().args(["ps", &id]).run().ok();
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column: {out}"));
    let rows: BTreeSet<i32> = lines
        .map(|l| {
            l.split_whitespace()
                .nth(col)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("row without a pid: {l:?}\n{out}"))
        })
        .collect();
    assert_eq!(rows, pids, "{out}");
    delete_and_check(&env, &id, &cg);
}

#[test]
fn kill_all_empties_the_cgroup() {
    let env = Env::new("cgkillall");
    let mut b = env.bundle();
    // Children and a grandchild. Once they are gone the init replaces
    // itself with one more sleep.
    b.sh("sleep 1000 & sleep 1000 & sh -c 'sleep 1000 & wait' & wait; echo children-gone; exec sleep 1000");
    let id = env.id();
    let cg = default_cgroup(&id);
    let (created, init) = start(&env, &b, &id);
    wait_for_procs(&cg, 5);
    // With a pid namespace, SIGKILL to the init alone would take everything
    // with it; SIGTERM shows that --all reaches each process: the init of a
    // pid namespace has no handler and ignores it, everything else dies.
    env.brig().args(["kill", "--all", &id, "TERM"]).run().ok();
    let left = wait_for_procs(&cg, 1);
    assert_eq!(left, BTreeSet::from([init]), "only the init should be left");
    wait_for_content(&created.stdout_path, "children-gone");
    env.brig().args(["kill", "--all", &id, "KILL"]).run().ok();
    wait_for_procs(&cg, 0);
    env.wait_status(&id, "stopped");
    delete_and_check(&env, &id, &cg);
}

#[test]
fn kill_all_empties_the_cgroup_without_a_pid_namespace() {
    let env = Env::new("cgkillallnp");
    let mut b = env.bundle();
    b.remove_namespace("pid");
    // No pid namespace: killing the init alone would leave the sleeps.
    b.sh("sleep 1000 & sleep 1000 & wait");
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    wait_for_procs(&cg, 3);
    env.brig().args(["kill", "--all", &id, "KILL"]).run().ok();
    wait_for_procs(&cg, 0);
    env.wait_status(&id, "stopped");
    delete_and_check(&env, &id, &cg);
}

/// runc: "kill --all ... no error is returned if the container is stopped";
/// it still signals what is left in the cgroup. Without a pid namespace the
/// init's children outlive it, and containerd cleans them up this way.
#[test]
fn kill_all_reaches_what_outlives_the_init_without_a_pid_namespace() {
    let env = Env::new("cgkillallst");
    let mut b = env.bundle();
    b.remove_namespace("pid");
    b.sh("sleep 1000 & echo started");
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    env.wait_status(&id, "stopped");
    let left = wait_for_procs(&cg, 1);
    env.brig().args(["kill", "--all", &id, "KILL"]).run().ok();
    poll_until(DEADLINE, &format!("{left:?} to die"), || {
        procs(&cg).is_empty()
    });
    env.brig().args(["delete", &id]).run().ok();
    assert_no_cgroup(&cg, "after delete");
    env.assert_nothing_left_behind("after delete");
}

#[test]
fn events_stats_prints_one_stats_event() {
    let env = Env::new("cgstats");
    let mut b = env.bundle();
    b.set("/linux/resources/memory", json!({"limit": 64 * MIB}));
    b.set("/linux/resources/pids", json!({"limit": 50}));
    b.args(&["sleep", "1000"]);
    let id = env.id();
    let cg = default_cgroup(&id);
    start(&env, &b, &id);
    let out = env.brig().args(["events", "--stats", &id]).run().ok();
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one event expected: {out}");
    let ev: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("stats event is not JSON ({e}): {out}"));
    assert_eq!(ev["type"], "stats", "{ev:#}");
    assert_eq!(ev["id"], id.as_str(), "{ev:#}");
    let data = &ev["data"];
    // runc's shape: memory.usage is a {usage, max, failcnt, limit} entry.
    assert!(
        data["memory"]["usage"]["usage"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "data.memory.usage.usage: {ev:#}"
    );
    assert_eq!(
        data["memory"]["usage"]["limit"].as_u64(),
        Some(64 * MIB),
        "{ev:#}"
    );
    assert_eq!(data["pids"]["current"].as_u64(), Some(1), "{ev:#}");
    assert_eq!(data["pids"]["limit"].as_u64(), Some(50), "{ev:#}");
    assert!(
        data["cpu"]["usage"]["total"].is_u64(),
        "data.cpu.usage.total: {ev:#}"
    );
    delete_and_check(&env, &id, &cg);
}

// ---------------------------------------------------------------------------
// Failed creates
// ---------------------------------------------------------------------------

#[test]
fn failed_creates_leave_no_cgroup() {
    let env = Env::new("cgfailed");
    type Edit = fn(&mut Bundle);
    let mut cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "missing executable",
            |b| {
                b.args(&["/no/such/binary"]);
            },
            vec!["/no/such/binary"],
        ),
        (
            "hugepage size the host lacks",
            |b| {
                b.set(
                    "/linux/resources/hugepageLimits",
                    json!([{"pageSize": "3MB", "limit": 1048576}]),
                );
            },
            vec!["hugepageLimits", "3MB"],
        ),
        (
            "a period the kernel refuses",
            |b| {
                b.set("/linux/resources/cpu", json!({"quota": 50, "period": 100}));
            },
            if pure_v2() {
                vec!["cpu.max"]
            } else {
                vec!["cpu.cfs_period_us"]
            },
        ),
    ];
    let v1_net_cls = Path::new(CGROUP_FS).join("net_cls").exists()
        || Path::new(CGROUP_FS).join("net_cls,net_prio").exists();
    if v1_net_cls {
        eprintln!("note: this host has net_cls: the missing-controller case is not checked");
    } else {
        cases.push((
            "a resource whose controller is missing",
            |b| {
                b.set("/linux/resources/network", json!({"classID": 42}));
            },
            vec!["network.classID"],
        ));
    }
    for (what, edit, needles) in cases {
        let mut b = env.bundle();
        edit(&mut b);
        let id = env.id();
        let mut out = env.create(&b, &id);
        for needle in &needles {
            out = out.fails_with(needle);
        }
        assert_no_cgroup(&default_cgroup(&id), what);
        env.assert_nothing_left_behind(what);
    }
}

// ---------------------------------------------------------------------------
// Footprint
// ---------------------------------------------------------------------------

/// Runs `true` under a memory (= memory+swap) limit of `kib` KiB.
fn true_runs_under(env: &Env, kib: u64) -> Result<(), String> {
    let mut b = env.bundle();
    b.args(&["true"]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": kib * 1024, "swap": kib * 1024}),
    );
    let id = env.id();
    let out = run_as(env, &b, &id);
    assert_no_cgroup(&default_cgroup(&id), &format!("run under {kib} KiB"));
    if out.success() {
        Ok(())
    } else {
        Err(out.to_string())
    }
}

#[test]
fn true_runs_under_512_kib() {
    let env = Env::new("cgfootprint");
    // Warm the page cache: the first charge of busybox's pages could land
    // on the limited container.
    let mut warm = env.bundle();
    warm.args(&["true"]);
    env.run_ok(&warm);

    let mut result = Err(String::new());
    for _ in 0..3 {
        result = true_runs_under(&env, 512);
        if result.is_ok() {
            break;
        }
    }

    // For the record: the lowest limit that works, to 16 KiB.
    let (mut lo, mut hi) = (256, 2048);
    let lowest = if true_runs_under(&env, hi).is_err() {
        None
    } else if true_runs_under(&env, lo).is_ok() {
        Some(lo)
    } else {
        while hi - lo > 16 {
            let mid = (lo + hi) / 2 / 16 * 16;
            if true_runs_under(&env, mid).is_ok() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    };
    match lowest {
        Some(k) => eprintln!("footprint: the lowest memory limit `true` ran under: {k} KiB"),
        None => eprintln!("footprint: `true` did not even run under 2048 KiB"),
    }

    if let Err(e) = result {
        panic!("`true` failed 3 times under a 512 KiB memory limit; the last time: {e}");
    }
    env.assert_nothing_left_behind("footprint runs");
}
