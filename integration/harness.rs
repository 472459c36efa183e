//! The machinery every integration test shares: a busybox rootfs built once
//! per test process, a private directory per test (bundles, `--root`, captured
//! output), config.json made by `brig spec` and patched, brig invocations with
//! deadlines, and cleanup that runs even when an assertion fails.

use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub const BRIG: &str = env!("CARGO_BIN_EXE_brig");

/// Generous on purpose: a 2-core CI machine building in parallel can be slow,
/// and a deadline only exists so that a hung runtime fails the test instead of
/// hanging the suite.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Name of the environment variable that marks every process a test starts
/// (brig through its Command, the container through config.json), so that
/// leftovers can be found in /proc without guessing.
pub const TAG_VAR: &str = "BRIG_IT_TAG";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_number() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Per-process directory and the shared rootfs
// ---------------------------------------------------------------------------

/// `$CARGO_TARGET_TMPDIR/brig-it/<pid>`: everything this test process makes.
/// Keyed by pid so that two test processes (a developer's and CI's) never
/// share a rootfs that one of them is rebuilding.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("brig-it");
        fs::create_dir_all(&base)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
        remove_stale_run_dirs(&base);
        let dir = base.join(std::process::id().to_string());
        if dir.exists() {
            // A recycled pid: the old run is certainly dead.
            remove_tree_if_unmounted(&dir);
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    })
}

/// Removes the run directory another test process (a helper this process
/// started and waited for) left behind.
pub fn remove_run_dir_of(pid: u32) {
    let dir = run_dir().with_file_name(pid.to_string());
    if dir != run_dir() {
        remove_tree_if_unmounted(&dir);
    }
}

fn remove_stale_run_dirs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree_if_unmounted(&entry.path());
        }
    }
}

/// remove_dir_all crosses mount points, so a mount leaked by a runtime bug
/// (a bind of /dev, say) would have its host files deleted. Leave such a tree
/// alone: the leak is the bug to see.
fn remove_tree_if_unmounted(dir: &Path) {
    if mounts_mentioning(dir).is_empty() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Lines of the test process's /proc/self/mountinfo (the host's mount
/// namespace) that mention `path`.
pub fn mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// The busybox rootfs shared by every test that does not write into its rootfs.
pub fn shared_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dest = run_dir().join("rootfs");
        let tmp = run_dir().join("rootfs.building");
        let _ = fs::remove_dir_all(&tmp);
        build_rootfs(&tmp);
        fs::rename(&tmp, &dest).expect("rename the finished rootfs into place");
        dest
    })
}

fn build_rootfs(dest: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (apt-get install busybox-static)"
    );
    // Mount targets used by the default spec and by the tests exist up front,
    // so that only tests about target creation make the runtime write here.
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "mnt",
        "root",
        "home/tester",
        "var",
    ] {
        fs::create_dir_all(dest.join(d)).unwrap_or_else(|e| panic!("mkdir rootfs/{d}: {e}"));
    }
    fs::set_permissions(dest.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod rootfs/tmp");
    fs::copy(busybox, dest.join("bin/busybox")).expect("copy /bin/busybox into the rootfs");
    fs::set_permissions(dest.join("bin/busybox"), fs::Permissions::from_mode(0o755))
        .expect("chmod rootfs/bin/busybox");
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .expect("run busybox --list-full");
    assert!(list.status.success(), "busybox --list-full failed");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = dest.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).expect("mkdir for an applet link");
        }
        if fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link).unwrap_or_else(|e| panic!("symlink {applet}: {e}"));
        }
    }
    fs::write(
        dest.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         tester:x:1000:1000:tester:/home/tester:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write etc/passwd");
    // Nobody is a member of another group, so the only supplementary groups a
    // process can have are the ones config.json asked for.
    fs::write(
        dest.join("etc/group"),
        "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n",
    )
    .expect("write etc/group");
    std::os::unix::fs::chown(dest.join("home/tester"), Some(1000), Some(1000))
        .expect("chown home/tester");
}

/// A full copy of the shared rootfs, for a test that changes it.
pub fn copy_rootfs(dest: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(shared_rootfs())
        .arg(dest)
        .status()
        .expect("run cp -a");
    assert!(
        status.success(),
        "cp -a of the rootfs to {} failed",
        dest.display()
    );
}

// ---------------------------------------------------------------------------
// A test's environment
// ---------------------------------------------------------------------------

/// One test's private world: its directory, its `--root`, its tag, and the ids
/// it created. Dropping it deletes every container (even after a failed
/// assertion), kills any process still carrying the tag and removes the
/// directory unless the test failed (kept for a post-mortem).
pub struct Env {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub tag: String,
    short: String,
    ids: Mutex<Vec<String>>,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let n = next_number();
        // Short names: the state directory path may hold a unix socket, and
        // sun_path is 108 bytes.
        let short: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(12)
            .collect();
        let dir = run_dir().join(format!("{n}-{short}"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Env {
            root: dir.join("r"),
            tag: format!("brig-it-{}-{n}", std::process::id()),
            dir,
            short,
            ids: Mutex::new(Vec::new()),
        }
    }

    /// A fresh container id, unique across concurrently running test
    /// processes (ids may name cgroups), deleted when the test ends.
    pub fn id(&self) -> String {
        let id = format!("{}-{}-{}", self.short, std::process::id(), next_number());
        self.register(&id);
        id
    }

    /// Makes sure `id` is deleted at the end even if the test fails.
    pub fn register(&self, id: &str) {
        self.ids.lock().expect("ids lock").push(id.to_string());
    }

    /// A new directory inside the test's directory.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// A bundle whose config.json comes from `brig spec`, pointed at the shared rootfs.
    pub fn bundle(&self) -> Bundle {
        let dir = self.mkdir(&format!("b{}", next_number()));
        let mut b = self.spec_bundle(&dir);
        b.rootfs = shared_rootfs().to_path_buf();
        b.set("/root/path", json!(shared_rootfs()));
        b
    }

    /// A bundle with its own copy of the rootfs at `<bundle>/rootfs`, named by
    /// the relative path `rootfs` as engines do.
    pub fn bundle_with_private_rootfs(&self) -> Bundle {
        let dir = self.mkdir(&format!("b{}", next_number()));
        copy_rootfs(&dir.join("rootfs"));
        let mut b = self.spec_bundle(&dir);
        b.rootfs = dir.join("rootfs");
        b.set("/root/path", json!("rootfs"));
        b
    }

    fn spec_bundle(&self, dir: &Path) -> Bundle {
        self.brig().args(["spec", "--bundle"]).arg(dir).run().ok();
        let path = dir.join("config.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("brig spec wrote no {}: {e}", path.display()));
        let config: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("brig spec wrote invalid JSON: {e}\n{text}"));
        let mut b = Bundle {
            dir: dir.to_path_buf(),
            rootfs: PathBuf::new(),
            config,
            tag: self.tag.clone(),
        };
        b.set("/root/readonly", json!(false));
        b.set("/process/terminal", json!(false));
        b.args(&["true"]);
        let mut env: Vec<Value> = b
            .get("/process/env")
            .as_array()
            .cloned()
            .unwrap_or_default();
        env.push(json!(format!("{TAG_VAR}={}", self.tag)));
        b.set("/process/env", Value::Array(env));
        b
    }

    /// `brig --root <root> ...` for this test.
    pub fn brig(&self) -> Call<'_> {
        Call {
            env: self,
            global: vec!["--root".into(), self.root.clone().into()],
            args: Vec::new(),
            fds: Vec::new(),
            umask: None,
            cwd: None,
            stdin: None,
            deadline: DEADLINE,
        }
    }

    /// `brig run --bundle B <fresh id>`, waiting for the container to exit.
    pub fn run(&self, b: &Bundle) -> Outcome {
        b.write();
        let id = self.id();
        self.brig()
            .args(["run", "--bundle"])
            .arg(&b.dir)
            .arg(&id)
            .run()
    }

    /// Runs the bundle, asserts success and returns what the container printed.
    pub fn run_ok(&self, b: &Bundle) -> String {
        self.run(b).ok().stdout
    }

    /// `brig run --detach --bundle B ID`, asserting it started.
    pub fn run_detached(&self, b: &Bundle, id: &str) -> Outcome {
        b.write();
        self.register(id);
        self.brig()
            .args(["run", "--detach", "--bundle"])
            .arg(&b.dir)
            .arg(id)
            .run()
            .ok()
    }

    /// `brig create --bundle B ID`; the container's stdio goes to the
    /// returned outcome's files, so later output can be re-read from them.
    pub fn create(&self, b: &Bundle, id: &str) -> Outcome {
        b.write();
        self.register(id);
        self.brig()
            .args(["create", "--bundle"])
            .arg(&b.dir)
            .arg(id)
            .run()
    }

    /// Parsed `brig state ID`, asserting the command succeeded.
    pub fn state(&self, id: &str) -> Value {
        let out = self.brig().args(["state", id]).run().ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state of {id} is not JSON ({e}): {out}"))
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_else(|| panic!("state of {id} has no string status"))
            .to_string()
    }

    /// Polls `brig state` until the container reaches `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = String::new();
        poll_until(
            DEADLINE,
            &format!("container {id} to become {want}"),
            || {
                last = self.status(id);
                last == want
            },
        );
    }

    /// Everything a failed (or finished) container must not leave: a state
    /// entry under --root, a process carrying the test's tag, a cgroup named
    /// after one of the test's ids, a mount mentioning the test's directory
    /// (its bundles and private rootfs live there).
    pub fn assert_nothing_left_behind(&self, what: &str) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            assert!(
                names.is_empty(),
                "{what}: state left under --root: {names:?}"
            );
        }
        // The runtime may still be tearing a child down when its command
        // returns; give the kernel a moment, not the test a pass.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = tagged_processes(&self.tag);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: processes left behind: {}",
                describe_pids(&left)
            );
            thread::sleep(Duration::from_millis(20));
        }
        let ids = self.ids.lock().expect("ids lock").clone();
        poll_until(
            Duration::from_secs(10),
            &format!("{what}: cgroups of {ids:?} to go"),
            || leaked_cgroups(&ids).is_empty(),
        );
        let mounts = mounts_mentioning(&self.dir);
        assert!(
            mounts.is_empty(),
            "{what}: mounts left behind:\n{}",
            mounts.join("\n")
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            let mut cmd = Command::new(BRIG);
            cmd.arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &id]);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = cmd.spawn() {
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Anything still carrying this test's unique tag was started by this
        // test (through brig); a runtime bug must not leak `sleep 1000`s
        // into the rest of the run.
        for pid in tagged_processes(&self.tag) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !thread::panicking() {
            remove_tree_if_unmounted(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// A bundle directory and the config.json it will get; edit with the JSON
/// pointer helpers, `write` (or Env::run/create) saves it.
pub struct Bundle {
    pub dir: PathBuf,
    /// The rootfs on the host, whichever way root.path names it.
    pub rootfs: PathBuf,
    pub config: Value,
    tag: String,
}

impl Bundle {
    pub fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config.json");
        fs::write(self.dir.join("config.json"), text).expect("write config.json");
    }

    pub fn get(&self, pointer: &str) -> &Value {
        self.config.pointer(pointer).unwrap_or(&Value::Null)
    }

    /// Sets the value at a JSON pointer, creating missing objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        let parts: Vec<&str> = pointer.split('/').skip(1).collect();
        let (last, parents) = parts.split_last().expect("a non-empty JSON pointer");
        for p in parents {
            if cur.is_null() {
                *cur = json!({});
            }
            cur = match cur {
                Value::Object(m) => m.entry(p.to_string()).or_insert(Value::Null),
                Value::Array(a) => {
                    let i: usize = p.parse().expect("array index in JSON pointer");
                    &mut a[i]
                }
                other => panic!("cannot descend into {other} at {p} of {pointer}"),
            };
        }
        if cur.is_null() {
            *cur = json!({});
        }
        match cur {
            Value::Object(m) => {
                m.insert(last.to_string(), value);
            }
            Value::Array(a) => {
                let i: usize = last.parse().expect("array index in JSON pointer");
                a[i] = value;
            }
            other => panic!("cannot set {pointer} inside {other}"),
        }
        self
    }

    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, last) = pointer.rsplit_once('/').expect("a JSON pointer");
        if let Some(Value::Object(m)) = self.config.pointer_mut(parent) {
            m.remove(last);
        }
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Replaces process.env, keeping the test's tag.
    pub fn env(&mut self, vars: &[&str]) -> &mut Self {
        let mut all: Vec<String> = vars.iter().map(|s| s.to_string()).collect();
        all.push(format!("{TAG_VAR}={}", self.tag));
        self.set("/process/env", json!(all))
    }

    pub fn add_mount(&mut self, mount: Value) -> &mut Self {
        let mut mounts = self.get("/mounts").as_array().cloned().unwrap_or_default();
        mounts.push(mount);
        self.set("/mounts", Value::Array(mounts))
    }

    pub fn tmpfs(&mut self, dest: &str, options: &[&str]) -> &mut Self {
        self.add_mount(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}),
        )
    }

    pub fn bind(&mut self, source: &Path, dest: &str, options: &[&str]) -> &mut Self {
        self.add_mount(
            json!({"destination": dest, "type": "bind", "source": source, "options": options}),
        )
    }

    pub fn namespace_types(&self) -> Vec<String> {
        self.get("/linux/namespaces")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["type"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        let mut ns = self
            .get("/linux/namespaces")
            .as_array()
            .cloned()
            .unwrap_or_default();
        ns.retain(|n| n["type"] != ty);
        self.set("/linux/namespaces", Value::Array(ns))
    }

    /// Adds (or replaces) a namespace entry, joining `path` when given.
    pub fn namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(ty);
        let mut ns = self
            .get("/linux/namespaces")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut entry = json!({ "type": ty });
        if let Some(p) = path {
            entry["path"] = json!(p);
        }
        ns.push(entry);
        self.set("/linux/namespaces", Value::Array(ns))
    }
}

// ---------------------------------------------------------------------------
// Invoking brig
// ---------------------------------------------------------------------------

/// A brig command line being built.
pub struct Call<'a> {
    env: &'a Env,
    global: Vec<OsString>,
    args: Vec<OsString>,
    fds: Vec<(RawFd, File)>,
    umask: Option<libc::mode_t>,
    cwd: Option<PathBuf>,
    stdin: Option<Stdio>,
    deadline: Duration,
}

impl Call<'_> {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// A global flag, placed before the subcommand.
    pub fn global(mut self, a: impl AsRef<OsStr>) -> Self {
        self.global.push(a.as_ref().to_os_string());
        self
    }

    /// Without `--root` (for commands that must not need one).
    pub fn without_root(mut self) -> Self {
        self.global.clear();
        self
    }

    /// Gives brig `file` as descriptor `target` (not close-on-exec), as a
    /// shim hands over extra fds.
    pub fn fd(mut self, target: RawFd, file: File) -> Self {
        self.fds.push((target, file));
        self
    }

    /// brig runs with this umask (to show the container does not inherit it).
    pub fn umask(mut self, mask: libc::mode_t) -> Self {
        self.umask = Some(mask);
        self
    }

    /// brig's stdin (and so the container's); /dev/null otherwise.
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Self {
        self.stdin = Some(stdin.into());
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn spawn(self) -> Running {
        let n = next_number();
        let stdout = self.env.dir.join(format!("out{n}.txt"));
        let stderr = self.env.dir.join(format!("err{n}.txt"));
        let mut cmd = Command::new(BRIG);
        cmd.args(&self.global).args(&self.args);
        cmd.env(TAG_VAR, &self.env.tag);
        cmd.current_dir(self.cwd.as_deref().unwrap_or(&self.env.dir));
        // Files, not pipes: a container keeps its stdio after `create` or
        // `run --detach` returns, and a pipe would block reading until it exits.
        cmd.stdin(self.stdin.unwrap_or_else(Stdio::null));
        cmd.stdout(File::create(&stdout).expect("create stdout file"));
        cmd.stderr(File::create(&stderr).expect("create stderr file"));
        let what = format!(
            "brig {}",
            self.global
                .iter()
                .chain(&self.args)
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let fds: Vec<(RawFd, RawFd)> = self.fds.iter().map(|(t, f)| (*t, f.as_raw_fd())).collect();
        let umask = self.umask;
        if !fds.is_empty() || umask.is_some() {
            // SAFETY: only async-signal-safe calls (fcntl, dup2, umask) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Move every source out of the way first, so a source that
                    // happens to sit on another one's target is not clobbered.
                    let mut high = Vec::with_capacity(fds.len());
                    for (target, src) in &fds {
                        let h = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 200);
                        if h < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        high.push((*target, h));
                    }
                    for (target, h) in high {
                        // dup2 leaves the new descriptor without FD_CLOEXEC.
                        if libc::dup2(h, target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(m) = umask {
                        libc::umask(m);
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Running {
            child,
            stdout,
            stderr,
            deadline: self.deadline,
            what,
        }
    }

    pub fn run(self) -> Outcome {
        self.spawn().wait()
    }
}

/// A brig process started by a test.
pub struct Running {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    deadline: Duration,
    what: String,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Signals the brig process (which this test started).
    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Polls the captured stdout until it contains `needle`; fails at once
    /// if brig exits first (it would never come).
    pub fn wait_for_stdout(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + self.deadline;
        loop {
            let text = fs::read_to_string(&self.stdout).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last look: the output may have landed just before exit.
                let text = fs::read_to_string(&self.stdout).unwrap_or_default();
                if text.contains(needle) {
                    return text;
                }
                panic!(
                    "{} exited ({status}) before printing {needle:?}\nstdout:\n{text}\nstderr:\n{}",
                    self.what,
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} printed no {needle:?} within {:?}",
                self.what,
                self.deadline
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for brig to exit; a brig still running at the deadline is killed
    /// and the test fails.
    pub fn wait(mut self) -> Outcome {
        let deadline = Instant::now() + self.deadline;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not finish within {:?}\nstdout:\n{}\nstderr:\n{}",
                        self.what,
                        self.deadline,
                        fs::read_to_string(&self.stdout).unwrap_or_default(),
                        fs::read_to_string(&self.stderr).unwrap_or_default()
                    );
                }
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        };
        Outcome {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
            stdout_path: self.stdout,
            what: self.what,
        }
    }
}

/// How a brig command ended and what was printed on its stdio (which, for a
/// container without a terminal, is also the container's).
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub stdout_path: PathBuf,
    what: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "expected success: {self}");
        self
    }

    /// stderr as a person reads it: without --log, runc (and brig) write
    /// errors as logrus text lines, `msg="exec: \"/x\": ..."`, quoting the
    /// message; this undoes that quoting so tests can look for the message.
    pub fn stderr_text(&self) -> String {
        self.stderr.replace("\\\"", "\"").replace("\\\\", "\\")
    }

    /// Asserts failure with a message containing `needle` on stderr.
    pub fn fails_with(self, needle: &str) -> Self {
        assert!(!self.status.success(), "expected failure: {self}");
        assert!(
            self.stderr_text().contains(needle),
            "expected stderr to contain {needle:?}: {self}"
        );
        self
    }

    /// What the container has written to stdout so far (it may outlive brig).
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".into(),
        };
        write!(
            f,
            "`{}` ended with {how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        )
    }
}

// ---------------------------------------------------------------------------
// Polling and /proc inspection
// ---------------------------------------------------------------------------

/// Polls `cond` every 10 ms until it holds; fails the test at the deadline.
pub fn poll_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls a file until it contains `needle`, returning the whole content.
pub fn wait_for_content(path: &Path, needle: &str) -> String {
    let mut text = String::new();
    poll_until(
        DEADLINE,
        &format!("{} to contain {needle:?}", path.display()),
        || {
            text = fs::read_to_string(path).unwrap_or_default();
            text.contains(needle)
        },
    );
    text
}

/// Cgroup directories named after one of `ids` (ids are unique to a test,
/// so any such directory is that test's), a few levels deep in every
/// hierarchy. The sandbox's own process_api subtree is never entered.
pub fn leaked_cgroups(ids: &[String]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, ids: &[String], found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "process_api" || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if ids.contains(&name) {
                found.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), depth - 1, ids, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 4, ids, &mut found);
    found
}

/// Pids whose environment carries `TAG_VAR=tag`.
pub fn tagged_processes(tag: &str) -> Vec<i32> {
    let want = format!("{TAG_VAR}={tag}");
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) {
            if environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
                found.push(pid);
            }
        }
    }
    found
}

fn describe_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            format!("{p} ({})", cmd.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The parent pid from /proc/PID/stat.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The value of `Field:` in a /proc/PID/status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    let prefix = format!("{field}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in status:\n{status}"))
}

/// A hexadecimal capability mask field (CapEff, ...) of a status text.
pub fn cap_field(status: &str, field: &str) -> u64 {
    let v = status_field(status, field);
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{field} {v:?} is not hex: {e}"))
}

/// Capability names in bit order (linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit mask of a list of capability names.
pub fn cap_mask<S: AsRef<str>>(names: &[S]) -> u64 {
    names.iter().fold(0, |m, n| {
        let i = CAP_NAMES
            .iter()
            .position(|c| *c == n.as_ref())
            .unwrap_or_else(|| panic!("unknown capability {}", n.as_ref()));
        m | 1 << i
    })
}

/// (soft, hard) of a /proc/PID/limits line such as "Max open files".
pub fn limit(limits: &str, name: &str) -> (String, String) {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} in limits:\n{limits}"));
    let mut it = line.split_whitespace();
    let soft = it.next().expect("soft limit").to_string();
    let hard = it.next().expect("hard limit").to_string();
    (soft, hard)
}

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub mount_point: String,
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// The option among the per-mount or the superblock options.
    pub fn has(&self, opt: &str) -> bool {
        self.options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == opt)
    }
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(MountEntry {
                mount_point: l[4].to_string(),
                options: l[5].split(',').map(str::to_string).collect(),
                fstype: r[0].to_string(),
                source: r[1].to_string(),
                super_options: r[2].split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The topmost mount at `mount_point` (the last one listed).
pub fn mount_at<'a>(entries: &'a [MountEntry], mount_point: &str) -> &'a MountEntry {
    entries
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .unwrap_or_else(|| panic!("nothing mounted at {mount_point}; mounts: {entries:#?}"))
}

/// Splits container output at lines `---`, for scripts that print several
/// reports; each part without its final newline.
pub fn sections(out: &str) -> Vec<String> {
    let mut parts = vec![Vec::new()];
    for line in out.lines() {
        if line == "---" {
            parts.push(Vec::new());
        } else {
            parts.last_mut().expect("at least one part").push(line);
        }
    }
    parts.into_iter().map(|p| p.join("\n")).collect()
}

/// Asserts a timestamp is RFC 3339 with a fractional second, as Go's
/// RFC3339Nano prints it (runc's `created`).
pub fn assert_rfc3339_nanos(s: &str) {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = b.len() >= 22
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && {
            let frac = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
            let rest = &s[20 + frac..];
            (1..=9).contains(&frac)
                && (rest == "Z"
                    || (rest.len() == 6
                        && (rest.starts_with('+') || rest.starts_with('-'))
                        && rest.as_bytes()[3] == b':'))
        };
    assert!(ok, "{s:?} is not an RFC 3339 timestamp with nanoseconds");
}

/// Each non-empty line of a `--log-format json` log, parsed and checked for
/// runc's three string fields.
pub fn json_log_lines(path: &Path) -> Vec<Value> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("no log at {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            for field in ["level", "msg", "time"] {
                assert!(v[field].is_string(), "log line lacks string {field}: {l}");
            }
            v
        })
        .collect()
}

/// The message of the last error line of a JSON log: what containerd shows.
pub fn last_logged_error(path: &Path) -> String {
    let lines = json_log_lines(path);
    lines
        .iter()
        .rev()
        .find(|l| l["level"] == "error")
        .and_then(|l| l["msg"].as_str())
        .unwrap_or_else(|| panic!("no error line in {}: {lines:#?}", path.display()))
        .to_string()
}

/// The pid written by --pid-file.
pub fn read_pid_file(path: &Path) -> i32 {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read pid file {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {} holds {text:?}: {e}", path.display()))
}
