//! `exec`, terminals and file descriptors: what containerd, Docker and podman
//! need after `create` (issue 4). Real containers, asserting from inside and
//! from the host; terminals are driven through real ptys on the test side.

use crate::harness::*;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};
use std::fs::{self, File};
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A container whose init is `sleep 1000`, started detached; its id and the
/// init's host pid.
fn sleeper(env: &Env, tweak: impl FnOnce(&mut Bundle)) -> (String, i32) {
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    tweak(&mut b);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let pid = init_pid(env, &id);
    (id, pid)
}

fn init_pid(env: &Env, id: &str) -> i32 {
    let st = env.state(id);
    st["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in state: {st:#}")) as i32
}

/// `brig exec FLAGS ID CMD...`.
fn exec(env: &Env, flags: &[&str], id: &str, cmd: &[&str]) -> Outcome {
    env.brig().arg("exec").args(flags).arg(id).args(cmd).run()
}

/// `brig exec FLAGS ID sh -c SCRIPT`, asserting success; its stdout.
fn exec_sh(env: &Env, flags: &[&str], id: &str, script: &str) -> String {
    exec(env, flags, id, &["sh", "-c", script]).ok().stdout
}

/// `brig exec --detach --pid-file P FLAGS ID CMD...`; the host pid.
fn exec_detached(env: &Env, flags: &[&str], id: &str, cmd: &[&str]) -> i32 {
    let pid_file = env.dir.join(format!("exec-{}.pid", unique()));
    env.brig()
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args(flags)
        .arg(id)
        .args(cmd)
        .run()
        .ok();
    read_pid_file(&pid_file)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Waits (briefly) until `pid` runs busybox: `exec --detach` may return
/// before its process has called execve (see
/// exec_detach_reports_a_failed_execve for runc's stricter behaviour).
fn wait_execd(pid: i32) {
    poll_until(
        Duration::from_secs(5),
        &format!("exec'd process {pid} to run busybox"),
        || fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.ends_with("bin/busybox")),
    );
}

fn proc_status(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
}

fn ns_link(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .display()
        .to_string()
}

/// Host pids of every live process in the pid namespace of `init`.
fn procs_in_pidns(init: i32) -> Vec<i32> {
    let want = ns_link(init, "pid");
    let mut found: Vec<i32> = fs::read_dir("/proc")
        .expect("list /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_link(format!("/proc/{p}/ns/pid"))
                .is_ok_and(|l| l.display().to_string() == want)
                && alive(*p)
        })
        .collect();
    found.sort();
    found
}

/// Host pids of every live process in exactly the cgroups of `init` (the
/// init included): the exec'd process and, while it is set up, brig's
/// children that carry it.
fn procs_in_cgroup_of(init: i32) -> Vec<i32> {
    let want = fs::read_to_string(format!("/proc/{init}/cgroup")).expect("init's cgroup");
    let mut found: Vec<i32> = fs::read_dir("/proc")
        .expect("list /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| c == want) && alive(*p)
        })
        .collect();
    found.sort();
    found
}

/// Open fd numbers of a process, seen from the host, with their targets.
fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().expect("fd number");
            let target = fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (n, target)
        })
        .collect();
    fds.sort();
    fds
}

fn fd_numbers(pid: i32) -> Vec<i32> {
    fds_of(pid).into_iter().map(|(n, _)| n).collect()
}

/// A shell loop that prints which of fds 0..=20 the shell itself has open:
/// `[ -e ]` opens nothing, unlike `ls /proc/self/fd`, which lists its own
/// directory fd too.
const LIST_FDS: &str =
    "for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do [ -e /proc/$$/fd/$i ] && printf '%s ' $i; done; echo";

/// A file holding `content`, opened for reading (not close-on-exec once
/// Call::fd or `with_fds` puts it at its number).
fn content_file(env: &Env, name: &str, content: &str) -> File {
    let path = env.dir.join(name);
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The caller's clutter: files at fds 3..=8, none close-on-exec.
fn cluttered<'a>(env: &Env, call: Call<'a>) -> Call<'a> {
    (3..=8).fold(call, |c, n| {
        c.fd(
            n,
            content_file(env, &format!("fd{n}.txt"), &format!("content-{n}\n")),
        )
    })
}

fn engine_fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/fixtures/engine-configs")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(env: &Env, name: &str, v: &Value) -> PathBuf {
    let path = env.dir.join(name);
    fs::write(&path, serde_json::to_string_pretty(v).expect("serialize"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|c| c.as_str().expect("a string").to_string())
        .collect()
}

/// Waits for a child with a deadline; a child still running then is killed
/// and the test fails.
fn wait_child(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// brig started by the test itself (for what Call cannot do: a shell prefix
/// that sets the environment, such as LISTEN_PID=$$, or a pty as stdio).
/// `prefix` runs in /bin/sh right before it execs brig with `args`.
fn brig_via_sh(env: &Env, prefix: &str, args: &[&OsStrLike], fds: Vec<(RawFd, File)>) -> Outcome2 {
    let n = unique();
    let stdout = env.dir.join(format!("sh-out{n}.txt"));
    let stderr = env.dir.join(format!("sh-err{n}.txt"));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{prefix} exec \"$0\" \"$@\""))
        .arg(BRIG)
        .arg("--root")
        .arg(&env.root)
        .args(args.iter().map(|a| a.as_os()))
        .env(TAG_VAR, &env.tag)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"));
    let raw: Vec<(RawFd, RawFd)> = fds.iter().map(|(t, f)| (*t, f.as_raw_fd())).collect();
    // SAFETY: only fcntl and dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::new();
            for (t, src) in &raw {
                let h = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 200);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push((*t, h));
            }
            for (t, h) in high {
                if libc::dup2(h, t) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let what = format!("sh -c '{prefix} exec brig ...'");
    let mut child = cmd.spawn().expect("start /bin/sh for brig");
    drop(fds);
    let status = wait_child(&mut child, &what, DEADLINE);
    Outcome2 {
        status,
        stdout: fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr).unwrap_or_default(),
        what,
    }
}

/// An argument for brig_via_sh: a &str or a path.
enum OsStrLike<'a> {
    S(&'a str),
    P(&'a Path),
}

impl OsStrLike<'_> {
    fn as_os(&self) -> &std::ffi::OsStr {
        match self {
            OsStrLike::S(s) => s.as_ref(),
            OsStrLike::P(p) => p.as_os_str(),
        }
    }
}

struct Outcome2 {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    what: String,
}

impl std::fmt::Display for Outcome2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ended with {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status.code(),
            self.status.signal(),
            self.stdout,
            self.stderr
        )
    }
}

// ---------------------------------------------------------------------------
// Unix sockets: receiving fds the way an engine does
// ---------------------------------------------------------------------------

/// A listening unix socket in the test's directory (short path: sun_path).
fn listener(env: &Env, name: &str) -> (UnixListener, PathBuf) {
    let path = env.dir.join(name);
    let l = UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    l.set_nonblocking(true).expect("nonblocking listener");
    (l, path)
}

/// Accepts one connection and receives one fd sent with SCM_RIGHTS; also
/// returns the payload bytes.
fn receive_fd(l: &UnixListener, what: &str) -> (OwnedFd, Vec<u8>) {
    let deadline = Instant::now() + DEADLINE;
    let stream = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nobody connected to {what}");
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept on {what}: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    let (fd, n) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap_or_else(|e| panic!("recvmsg on {what}: {e}"));
        let mut fd = None;
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these fds for us.
                for f in fds {
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        (
            fd.unwrap_or_else(|| panic!("{what}: a message without SCM_RIGHTS")),
            msg.bytes,
        )
    };
    (fd, buf[..n].to_vec())
}

/// The `Pid:` line of a pidfd's fdinfo in this process.
fn pidfd_pid(fd: &OwnedFd) -> i32 {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .expect("read the pidfd's fdinfo");
    status_field(&info, "Pid")
        .parse()
        .unwrap_or_else(|e| panic!("Pid in fdinfo is not a number ({e}):\n{info}"))
}

// ---------------------------------------------------------------------------
// Terminals on the test side
// ---------------------------------------------------------------------------

/// A pseudo-terminal pair made by the test (both ends close-on-exec).
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn set_winsize(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

fn open_pty(rows: u16, cols: u16) -> Pty {
    // SAFETY: open(2) of a constant path; ioctls on the fd we just opened.
    unsafe {
        let m = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            m >= 0,
            "open /dev/ptmx: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(m);
        let unlock: libc::c_int = 0;
        assert_eq!(libc::ioctl(m, libc::TIOCSPTLCK, &unlock), 0, "unlockpt");
        let s = libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(s >= 0, "TIOCGPTPEER: {}", std::io::Error::last_os_error());
        let slave = OwnedFd::from_raw_fd(s);
        set_winsize(&master, rows, cols);
        Pty { master, slave }
    }
}

fn lflag(fd: &impl AsFd) -> nix::sys::termios::LocalFlags {
    nix::sys::termios::tcgetattr(fd.as_fd())
        .expect("tcgetattr")
        .local_flags
}

/// brig with the pty's slave as stdin, stdout and stderr and as its
/// controlling terminal, in a session of its own: a user at a terminal.
fn brig_on_pty(env: &Env, pty: &Pty, args: &[&str]) -> Child {
    let dup = || Stdio::from(pty.slave.try_clone().expect("dup the pty slave"));
    let mut cmd = Command::new(BRIG);
    cmd.arg("--root")
        .arg(&env.root)
        .args(args)
        .env(TAG_VAR, &env.tag)
        .current_dir(&env.dir)
        .stdin(dup())
        .stdout(dup())
        .stderr(dup());
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("start brig on the pty")
}

/// The test's side of a terminal: writes keystrokes, collects what comes back.
struct Term {
    fd: OwnedFd,
    seen: Vec<u8>,
    next: u32,
    closed: bool,
}

impl Term {
    fn new(fd: OwnedFd) -> Term {
        Term {
            fd,
            seen: Vec::new(),
            next: 1,
            closed: false,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    fn type_in(&self, s: &str) {
        let mut f = File::from(self.fd.try_clone().expect("dup the terminal"));
        f.write_all(s.as_bytes()).expect("type into the terminal");
    }

    /// Reads for up to `timeout`; false once the other side is gone.
    fn pump(&mut self, timeout: Duration) -> bool {
        if self.closed {
            return false;
        }
        let mut pfd = [nix::poll::PollFd::new(
            self.fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = timeout.as_millis().min(1000) as u16;
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(nix::Error::EINTR) => return true,
            Ok(_) => {}
            Err(e) => panic!("poll on the terminal: {e}"),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(&self.fd, &mut buf) {
            Ok(0) | Err(nix::Error::EIO) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.seen.extend_from_slice(&buf[..n]);
                true
            }
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => true,
            Err(e) => panic!("read the terminal: {e}"),
        }
    }

    /// Reads until the output holds `needle` (from byte `from` on).
    fn wait_for(&mut self, needle: &str, from: usize) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text =
                String::from_utf8_lossy(&self.seen[from.min(self.seen.len())..]).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the terminal within {DEADLINE:?}; it showed:\n{}",
                self.text()
            );
            if !self.pump(Duration::from_millis(50)) && !self.text().contains(needle) {
                let text = self.text();
                assert!(
                    text[from.min(text.len())..].contains(needle),
                    "the terminal closed before {needle:?}; it showed:\n{text}"
                );
            }
        }
    }

    /// Types `echo` of `cmd`'s output between markers that only the shell's
    /// arithmetic produces (the echoed keystrokes never contain them) and
    /// returns the output, without carriage returns.
    fn ask(&mut self, cmd: &str) -> String {
        let k = self.next;
        self.next += 1;
        let from = self.seen.len();
        self.type_in(&format!("echo \"[[$(({k}+0))[[$({cmd})]]$(({k}+0))]]\"\n"));
        let (start, end) = (format!("[[{k}[["), format!("]]{k}]]"));
        let text = self.wait_for(&end, from);
        let begin = text
            .rfind(&start)
            .unwrap_or_else(|| panic!("no {start:?} before {end:?} in:\n{text}"));
        let stop = text[begin..].find(&end).expect("end marker") + begin;
        text[begin + start.len()..stop].replace('\r', "")
    }
}

// ---------------------------------------------------------------------------
// exec: namespaces, cgroup, exit codes
// ---------------------------------------------------------------------------

#[test]
fn exec_shares_the_inits_namespaces_hostname_mounts_and_cgroup() {
    let env = Env::new("exec-ns");
    let (id, init) = sleeper(&env, |b| {
        b.set("/hostname", json!("exec-host"));
    });
    let out = exec_sh(
        &env,
        &[],
        &id,
        "for n in pid mnt uts ipc net cgroup; do echo $n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n); done
         echo ---; hostname
         echo ---; tr '\\0' ' ' < /proc/1/cmdline; echo
         echo ---; echo $$
         echo ---; cat /proc/self/mountinfo
         echo ---; cat /proc/1/mountinfo
         echo ---; ps -o pid,args",
    );
    let parts = sections(&out);
    assert_eq!(parts.len(), 7, "{out}");
    for line in parts[0].lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(f[1], f[2], "exec's {} namespace is not the init's", f[0]);
        assert_eq!(
            f[1],
            ns_link(init, f[0]),
            "inside and host disagree on the {} namespace",
            f[0]
        );
    }
    assert_eq!(parts[1], "exec-host", "hostname");
    assert_eq!(parts[2], "sleep 1000 ", "/proc/1 is the init");
    assert_ne!(parts[3], "1", "the exec'd shell is not pid 1");
    assert_eq!(parts[4], parts[5], "mountinfo of exec and init differ");
    let root = parse_mountinfo(&parts[4]);
    assert_eq!(mount_at(&root, "/").mount_point, "/");
    assert!(
        parts[6]
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "1000"]),
        "ps shows no init `sleep 1000` as pid 1:\n{}",
        parts[6]
    );

    // From the host: a detached exec'd process has every namespace, the
    // root and the cgroups of the init.
    let pid = exec_detached(&env, &[], &id, &["sleep", "1000"]);
    wait_execd(pid);
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup", "user"] {
        assert_eq!(ns_link(pid, ns), ns_link(init, ns), "{ns} namespace");
    }
    let root_of = |p: i32| {
        let m = fs::metadata(format!("/proc/{p}/root/")).expect("stat root");
        (m.dev(), m.ino())
    };
    assert_eq!(root_of(pid), root_of(init), "root directory");
    let cg = |p: i32| fs::read_to_string(format!("/proc/{p}/cgroup")).expect("read cgroup");
    assert_eq!(cg(pid), cg(init), "cgroup of the exec'd process");
    assert!(
        cg(init)
            .lines()
            .any(|l| l.split(':').nth(2).is_some_and(|p| p.contains(&id))),
        "the init is not in the container's cgroup: {}",
        cg(init)
    );
}

#[test]
fn exec_exit_codes_are_the_process_exit_codes() {
    let env = Env::new("exec-codes");
    let (id, _) = sleeper(&env, |_| {});
    for (script, want) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("kill -TERM $$", 128 + libc::SIGTERM),
        ("kill -KILL $$", 128 + libc::SIGKILL),
    ] {
        let out = exec(&env, &[], &id, &["sh", "-c", script]);
        assert_eq!(out.code(), Some(want), "{script}: {out}");
    }
    let out = exec(&env, &[], &id, &["/no/such/program"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr_text().contains("/no/such/program"),
        "the error names the program: {out}"
    );
    assert_eq!(env.status(&id), "running");
}

#[test]
fn exec_detach_writes_the_host_pid_of_a_process_running_busybox() {
    let env = Env::new("exec-detach");
    let (id, init) = sleeper(&env, |_| {});
    let pid = exec_detached(&env, &[], &id, &["sleep", "1000"]);
    wait_execd(pid);
    assert!(
        alive(pid),
        "exec'd process {pid} is not alive after brig returned"
    );
    let status = proc_status(pid);
    let nspid: Vec<&str> = status_field(&status, "NSpid").split_whitespace().collect();
    assert_eq!(
        nspid.len(),
        2,
        "NSpid {nspid:?}: not in the container's pid namespace"
    );
    assert_eq!(nspid[0], pid.to_string(), "the pid file holds the host pid");
    assert_ne!(nspid[1], "1");
    assert_eq!(
        fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline"),
        b"sleep\x001000\x00"
    );
    // Once exec'd, the process is busybox, never a copy of brig.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink exe");
    assert!(
        exe.ends_with("bin/busybox"),
        "/proc/{pid}/exe is {}",
        exe.display()
    );
    let m = fs::metadata(format!("/proc/{pid}/exe")).expect("stat exe");
    let bb = fs::metadata(shared_rootfs().join("bin/busybox")).expect("stat busybox");
    assert_eq!(
        (m.dev(), m.ino()),
        (bb.dev(), bb.ino()),
        "exe is not the rootfs's busybox"
    );
    let brig = fs::metadata(BRIG).expect("stat brig");
    assert_ne!((m.dev(), m.ino()), (brig.dev(), brig.ino()));
    // Dumpable again after its exec: another process in the container sees its exe.
    let inside = exec_sh(&env, &[], &id, &format!("readlink /proc/{}/exe", nspid[1]));
    assert_eq!(inside, "/bin/busybox\n");
    assert!(procs_in_pidns(init).contains(&pid));
}

#[test]
fn exec_detach_reports_a_failed_execve() {
    // runc's parent reads its sync socket until the child's execve closes
    // it (close-on-exec), so even `exec --detach` returns only once the
    // program runs, and an execve failure is its error. A program that
    // exists, is executable, and is no executable format shows it.
    let env = Env::new("exec-enoexec");
    let mut b = env.bundle_with_private_rootfs();
    let bad = b.rootfs.join("bin/not-a-program");
    fs::write(&bad, "neither ELF nor #!\n").expect("write the bad program");
    fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the bad program");
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let out = exec(&env, &[], &id, &["/bin/not-a-program"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr_text()
            .to_lowercase()
            .contains("exec format error"),
        "{out}"
    );
    let pid_file = env.dir.join("bad.pid");
    let out = env
        .brig()
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args([id.as_str(), "/bin/not-a-program"])
        .run();
    assert!(
        !out.success()
            && out
                .stderr_text()
                .to_lowercase()
                .contains("exec format error"),
        "exec --detach of a program whose execve fails must fail: {out}"
    );
}

// ---------------------------------------------------------------------------
// exec: credentials and process flags
// ---------------------------------------------------------------------------

#[test]
fn exec_user_runs_unprivileged_with_no_capabilities() {
    let env = Env::new("exec-user");
    let (id, _) = sleeper(&env, |_| {});
    let out = exec_sh(
        &env,
        &["--user", "1000:1000"],
        &id,
        "id -u; id -g; echo ---; cat /proc/$$/status",
    );
    let parts = sections(&out);
    assert_eq!(parts[0], "1000\n1000", "{out}");
    let st = &parts[1];
    assert_eq!(status_field(st, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(st, "Gid"), "1000\t1000\t1000\t1000");
    for f in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(cap_field(st, f), 0, "{f} of a uid-1000 exec: {st}");
    }
    // UID alone keeps the process's gid.
    let out = exec_sh(&env, &["-u", "1000"], &id, "id -u; id -g");
    assert_eq!(out, "1000\n0\n");
}

#[test]
fn exec_user_is_parsed_strictly() {
    let env = Env::new("exec-strict");
    let (id, init) = sleeper(&env, |_| {});
    for bad in ["root", "1000:", ":1000", "1000:wheel", "-1", "1000:1000:1"] {
        let flag = format!("--user={bad}");
        let out = exec(&env, &[&flag], &id, &["true"]);
        assert!(!out.success(), "--user {bad:?} was accepted: {out}");
        assert!(
            out.stderr_text().contains("--user"),
            "--user {bad:?}: the error should name the flag: {out}"
        );
    }
    assert_eq!(
        procs_in_pidns(init),
        [init],
        "a refused exec started a process"
    );
}

#[test]
fn exec_cap_adds_a_capability_and_nothing_inheritable_unless_asked() {
    let env = Env::new("exec-cap");
    let mut base = Value::Null;
    let (id, init) = sleeper(&env, |b| {
        base = b.get("/process").clone();
    });
    let admin = cap_mask(&["CAP_SYS_ADMIN"]);
    let init_status = proc_status(init);
    assert_eq!(cap_field(&init_status, "CapBnd") & admin, 0, "precondition");

    let plain = exec_sh(&env, &[], &id, "cat /proc/$$/status");
    assert_eq!(
        cap_field(&plain, "CapEff"),
        cap_field(&init_status, "CapEff")
    );
    assert_eq!(
        cap_field(&plain, "CapBnd"),
        cap_field(&init_status, "CapBnd")
    );
    assert_eq!(cap_field(&plain, "CapInh"), 0, "CVE-2022-29162: {plain}");
    assert_eq!(cap_field(&plain, "CapAmb"), 0);

    let with = exec_sh(
        &env,
        &["--cap", "CAP_SYS_ADMIN"],
        &id,
        "cat /proc/$$/status",
    );
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            cap_field(&with, f) & admin,
            admin,
            "{f} lacks CAP_SYS_ADMIN: {with}"
        );
        assert_eq!(
            cap_field(&with, f) & !admin,
            cap_field(&plain, f),
            "{f}: --cap changed more than CAP_SYS_ADMIN"
        );
    }
    assert_eq!(cap_field(&with, "CapInh"), 0);
    // The init is untouched.
    assert_eq!(cap_field(&proc_status(init), "CapBnd") & admin, 0);

    let bad = exec(&env, &["--cap", "CAP_NO_SUCH"], &id, &["true"]);
    assert!(!bad.success(), "{bad}");

    // Inheritable only when the process asks for it.
    let mut p = base;
    p["args"] = json!(["sh", "-c", "cat /proc/$$/status"]);
    p["capabilities"]["inheritable"] = json!(["CAP_KILL"]);
    let f = write_json(&env, "inh.json", &p);
    let asked = exec(&env, &["--process", f.to_str().unwrap()], &id, &[])
        .ok()
        .stdout;
    assert_eq!(
        cap_field(&asked, "CapInh"),
        cap_mask(&["CAP_KILL"]),
        "{asked}"
    );
}

#[test]
fn exec_env_cwd_additional_gids_and_no_new_privs() {
    let env = Env::new("exec-flags");
    let (id, _) = sleeper(&env, |b| {
        b.set("/process/noNewPrivileges", json!(false));
    });
    let out = exec_sh(
        &env,
        &[
            "-e",
            "FOO=bar",
            "--env",
            "TERM=dumb",
            "--cwd",
            "/tmp",
            "-g",
            "5",
            "--additional-gids",
            "7",
        ],
        &id,
        "pwd; echo ---; env; echo ---; cat /proc/$$/status",
    );
    let parts = sections(&out);
    assert_eq!(parts[0], "/tmp", "--cwd");
    let vars: Vec<&str> = parts[1].lines().collect();
    assert!(vars.contains(&"FOO=bar"), "-e FOO=bar: {vars:?}");
    assert_eq!(
        vars.iter()
            .filter(|v| v.starts_with("TERM="))
            .collect::<Vec<_>>(),
        [&"TERM=dumb"],
        "-e replaces the config's TERM"
    );
    assert!(
        vars.iter().any(|v| v.starts_with("PATH=/")),
        "the config's other variables stay: {vars:?}"
    );
    assert_eq!(
        status_field(&parts[2], "Groups"),
        "5 7",
        "--additional-gids"
    );
    assert_eq!(
        status_field(&parts[2], "NoNewPrivs"),
        "0",
        "the config says false"
    );

    let nnp = exec_sh(&env, &["--no-new-privs"], &id, "cat /proc/$$/status");
    assert_eq!(status_field(&nnp, "NoNewPrivs"), "1", "--no-new-privs");
    // Without flags, cwd is the config's.
    assert_eq!(exec_sh(&env, &[], &id, "pwd"), "/\n");
}

// ---------------------------------------------------------------------------
// exec: container states
// ---------------------------------------------------------------------------

#[test]
fn exec_into_a_stopped_container_fails() {
    let env = Env::new("exec-stopped");
    let mut b = env.bundle();
    b.args(&["true"]);
    let id = env.id();
    env.create(&b, &id).ok();
    env.brig().args(["start", &id]).run().ok();
    env.wait_status(&id, "stopped");
    let out = exec(&env, &[], &id, &["echo", "should-not-run"]);
    assert!(!out.stdout.contains("should-not-run"), "{out}");
    out.fails_with("stopped");
    exec(&env, &[], "no-such-container", &["true"]).fails_with("no-such-container");
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    let env = Env::new("exec-paused");
    let (id, init) = sleeper(&env, |_| {});
    env.brig().args(["pause", &id]).run().ok();
    assert_eq!(env.status(&id), "paused");
    exec(&env, &[], &id, &["echo", "x"]).fails_with("paused");
    assert_eq!(
        procs_in_pidns(init),
        [init],
        "a refused exec started a process"
    );

    // With --ignore-paused the exec is not refused: as with runc, its
    // process joins the frozen cgroup and finishes once the container resumes.
    let call = env
        .brig()
        .args([
            "exec",
            "--ignore-paused",
            &id,
            "sh",
            "-c",
            "echo ran-after-resume",
        ])
        .spawn();
    poll_until(
        DEADLINE,
        "the exec'd process to join the paused cgroup",
        || procs_in_cgroup_of(init).len() > 1,
    );
    env.brig().args(["resume", &id]).run().ok();
    let out = call.wait().ok();
    assert_eq!(out.stdout, "ran-after-resume\n", "{out}");
    assert_eq!(env.status(&id), "running");
}

// ---------------------------------------------------------------------------
// exec: engine documents and flag orders
// ---------------------------------------------------------------------------

fn engine_exec_runs(engine: &str) {
    let env = Env::new(&format!("{engine}-exec"));
    let (id, _) = sleeper(&env, |_| {});
    let sent = engine_fixture(&format!("{engine}-exec-process.json"));
    let file = write_json(&env, "process.json", &sent);
    let out = exec(&env, &["--process", file.to_str().unwrap()], &id, &[]).ok();
    assert_eq!(out.stdout, "exec-ok\n", "{out}");

    // The same document with args that report what the process got.
    let mut probe = sent.clone();
    probe["args"] = json!([
        "sh",
        "-c",
        "cat /proc/$$/status; echo ---; cat /proc/$$/limits; echo ---; env; echo ---; pwd"
    ]);
    let file = write_json(&env, "probe.json", &probe);
    let out = exec(&env, &["--process", file.to_str().unwrap()], &id, &[])
        .ok()
        .stdout;
    let parts = sections(&out);
    assert_eq!(parts.len(), 4, "{out}");
    let (status, limits, vars) = (&parts[0], &parts[1], &parts[2]);
    let caps = &sent["capabilities"];
    assert_eq!(
        cap_field(status, "CapEff"),
        cap_mask(&names(&caps["effective"]))
    );
    assert_eq!(
        cap_field(status, "CapPrm"),
        cap_mask(&names(&caps["permitted"]))
    );
    assert_eq!(
        cap_field(status, "CapBnd"),
        cap_mask(&names(&caps["bounding"]))
    );
    assert_eq!(cap_field(status, "CapInh"), 0);
    if sent["noNewPrivileges"] == json!(true) {
        assert_eq!(status_field(status, "NoNewPrivs"), "1");
    }
    if let Some(gids) = sent["user"]["additionalGids"].as_array() {
        let want: Vec<String> = gids.iter().map(|g| g.to_string()).collect();
        assert_eq!(status_field(status, "Groups"), want.join(" "));
    }
    for r in sent["rlimits"].as_array().into_iter().flatten() {
        let name = match r["type"].as_str() {
            Some("RLIMIT_NOFILE") => "Max open files",
            Some("RLIMIT_NPROC") => "Max processes",
            other => panic!("fixture has an unexpected rlimit {other:?}"),
        };
        assert_eq!(
            limit(limits, name),
            (r["soft"].to_string(), r["hard"].to_string()),
            "{name}"
        );
    }
    let vars: Vec<&str> = vars.lines().collect();
    for v in names(&sent["env"]) {
        assert!(vars.contains(&v.as_str()), "{v} missing from {vars:?}");
    }
    assert!(
        !vars.iter().any(|v| v.starts_with(TAG_VAR)),
        "--process replaces the environment, it does not merge the config's: {vars:?}"
    );
    assert_eq!(parts[3], "/");
}

#[test]
fn containerds_exec_process_runs() {
    engine_exec_runs("containerd");
}

#[test]
fn dockers_exec_process_runs() {
    engine_exec_runs("docker");
}

#[test]
fn podmans_exec_process_runs() {
    engine_exec_runs("podman");
}

/// An engine's exec with a terminal: the document as sent with
/// `terminal: true` (what `exec -t` adds), in the engine's flag order.
fn engine_exec_with_console(
    engine: &str,
    order: impl Fn(&Path, &Path, &Path, &str) -> Vec<String>,
) {
    let env = Env::new(&format!("{engine}-order"));
    let (id, init) = sleeper(&env, |_| {});
    let mut doc = engine_fixture(&format!("{engine}-exec-process.json"));
    doc["terminal"] = json!(true);
    let file = write_json(&env, "process.json", &doc);
    let (l, sock) = listener(&env, "c.sock");
    let pid_file = env.dir.join("exec.pid");
    let args = order(&file, &sock, &pid_file, &id);
    env.brig().args(&args).run().ok();
    let pid = read_pid_file(&pid_file);
    assert!(pid > 0 && pid != init, "pid file holds {pid}");
    let (master, payload) = receive_fd(&l, "the console socket");
    assert_eq!(payload, b"/dev/ptmx", "runc's payload is the master's name");
    let mut term = Term::new(master);
    term.wait_for("exec-ok", 0);
}

#[test]
fn containerds_exec_flag_order_works() {
    engine_exec_with_console("containerd", |f, s, p, id| {
        let d = |x: &Path| x.display().to_string();
        vec![
            "exec".into(),
            "--process".into(),
            d(f),
            "--console-socket".into(),
            d(s),
            "--detach".into(),
            "--pid-file".into(),
            d(p),
            id.into(),
        ]
    });
}

#[test]
fn podmans_exec_flag_order_works() {
    engine_exec_with_console("podman", |f, s, p, id| {
        let d = |x: &Path| x.display().to_string();
        vec![
            "exec".into(),
            "--pid-file".into(),
            d(p),
            "--process".into(),
            d(f),
            "--detach".into(),
            "--tty".into(),
            "--console-socket".into(),
            d(s),
            id.into(),
        ]
    });
}

#[test]
fn dockers_exec_detached_without_a_terminal_writes_to_brigs_stdout() {
    let env = Env::new("docker-detach");
    let (id, _) = sleeper(&env, |_| {});
    let doc = engine_fixture("docker-exec-process.json");
    let file = write_json(&env, "process.json", &doc);
    let pid_file = env.dir.join("exec.pid");
    let out = env
        .brig()
        .args(["exec", "--process"])
        .arg(&file)
        .arg("--detach")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .run()
        .ok();
    assert!(read_pid_file(&pid_file) > 0);
    wait_for_content(&out.stdout_path, "exec-ok");
}

// ---------------------------------------------------------------------------
// Terminals
// ---------------------------------------------------------------------------

/// Drives an interactive `sh` through the test's pty: tty, stty size, a
/// resize with SIGWINCH, then `exit 7`; checks brig's raw mode and its
/// restoration.
fn drive_shell_on_pty(env: &Env, args: &[&str], console_too: bool) {
    let pty = open_pty(31, 97);
    let before = lflag(&pty.slave);
    assert!(before.contains(nix::sys::termios::LocalFlags::ICANON));
    let mut brig = brig_on_pty(env, &pty, args);
    let mut term = Term::new(pty.master.try_clone().expect("dup master"));
    let tty = term.ask("tty");
    assert!(
        tty.starts_with("/dev/pts/") && tty["/dev/pts/".len()..].parse::<u32>().is_ok(),
        "tty inside: {tty:?}\n{}",
        term.text()
    );
    assert_eq!(term.ask("stty size"), "31 97", "the user's window size");
    // brig relays in raw mode: the test's terminal no longer cooks lines.
    let raw = lflag(&pty.slave);
    assert!(
        !raw.contains(nix::sys::termios::LocalFlags::ICANON)
            && !raw.contains(nix::sys::termios::LocalFlags::ECHO),
        "brig did not put its terminal in raw mode: {raw:?}"
    );
    if console_too {
        // /dev/console is the pty: the same character device as `tty`.
        let dev = term.ask("stat -L -c %t:%T /dev/console $(tty) | tr '\\n' ' '");
        let d: Vec<&str> = dev.split_whitespace().collect();
        assert_eq!(d.len(), 2, "{dev}");
        assert!(
            d[0].starts_with("88:"),
            "/dev/console is not a pty (136:N): {dev}"
        );
        assert_eq!(d[0], d[1], "/dev/console is not the process's tty");
    }
    set_winsize(&pty.master, 45, 120);
    // SAFETY: signalling the brig this test started.
    unsafe { libc::kill(brig.id() as i32, libc::SIGWINCH) };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let size = term.ask("stty size");
        if size == "45 120" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resize never reached the container: stty size says {size}"
        );
    }
    term.type_in("exit 7\n");
    let status = wait_child(&mut brig, "brig on the pty", DEADLINE);
    assert_eq!(
        status.code(),
        Some(7),
        "brig's exit code is the shell's:\n{}",
        term.text()
    );
    let after = lflag(&pty.slave);
    assert_eq!(after, before, "brig did not restore the terminal's mode");
}

#[test]
fn run_relays_a_real_terminal_with_resize() {
    let env = Env::new("pty-run");
    let mut b = env.bundle();
    b.set("/process/terminal", json!(true));
    b.args(&["sh"]);
    b.write();
    let id = env.id();
    let dir = b.dir.display().to_string();
    drive_shell_on_pty(&env, &["run", "--bundle", &dir, &id], true);
    env.assert_nothing_left_behind("run on a pty");
}

#[test]
fn exec_tty_relays_a_real_terminal_with_resize() {
    let env = Env::new("pty-exec");
    let (id, init) = sleeper(&env, |_| {});
    drive_shell_on_pty(&env, &["exec", "--tty", &id, "sh"], false);
    poll_until(DEADLINE, "the exec'd shell to go", || {
        procs_in_pidns(init) == [init]
    });
}

#[test]
fn create_with_console_socket_sends_the_master_and_sets_console_size() {
    let env = Env::new("console-sock");
    let mut b = env.bundle();
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 27, "width": 91}));
    b.args(&["sh"]);
    b.write();
    let id = env.id();
    let (l, sock) = listener(&env, "c.sock");
    let created = env
        .brig()
        .args(["create", "--console-socket"])
        .arg(&sock)
        .arg("--bundle")
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let (master, payload) = receive_fd(&l, "the console socket");
    assert_eq!(payload, b"/dev/ptmx");
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into n.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    assert_eq!(rc, 0, "the received fd is not a pty master");
    env.brig().args(["start", &id]).run().ok();
    let init = init_pid(&env, &id);
    // The container's stdio is the pty, not create's files.
    for (fd, target) in fds_of(init).into_iter().filter(|(n, _)| *n < 3) {
        assert!(
            target.starts_with("/dev/pts/"),
            "init's fd {fd} is {target}, not the pty slave"
        );
    }
    let mut term = Term::new(master);
    assert_eq!(
        term.ask("tty"),
        format!("/dev/pts/{n}"),
        "master and slave pair up"
    );
    assert_eq!(term.ask("stty size"), "27 91", "process.consoleSize");
    let dev = term.ask("stat -L -c %t:%T /dev/console $(tty) | tr '\\n' ' '");
    let d: Vec<&str> = dev.split_whitespace().collect();
    assert_eq!(
        d,
        [format!("88:{n:x}"), format!("88:{n:x}")],
        "/dev/console is 136:{n}"
    );
    assert_eq!(
        term.ask("cat /proc/1/cmdline | tr '\\0' ' '"),
        "sh ",
        "talking to the init"
    );
    term.type_in("exit 3\n");
    env.wait_status(&id, "stopped");
    assert_eq!(created.stdout_now(), "", "nothing went to create's stdout");
    env.brig().args(["delete", &id]).run().ok();
}

#[test]
fn exec_tty_with_console_socket_sends_the_master() {
    // Detached, as engines call it (runc refuses a console socket without
    // --detach: "cannot use console socket if runc will not detach or
    // allocate tty").
    let env = Env::new("exec-console");
    let (id, init) = sleeper(&env, |_| {});
    let (l, sock) = listener(&env, "c.sock");
    let s = sock.display().to_string();
    let pid = exec_detached(&env, &["--tty", "--console-socket", &s], &id, &["sh"]);
    let (master, payload) = receive_fd(&l, "the console socket");
    assert_eq!(payload, b"/dev/ptmx");
    let mut term = Term::new(master);
    let tty = term.ask("tty");
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    assert_eq!(
        term.ask("cat /proc/1/cmdline | tr '\\0' ' '"),
        "sleep 1000 "
    );
    // The shell the master talks to is the process of the pid file.
    let nspid = status_field(&proc_status(pid), "NSpid")
        .split_whitespace()
        .last()
        .expect("NSpid")
        .to_string();
    assert_eq!(term.ask("echo $$"), nspid);
    term.type_in("exit 4\n");
    poll_until(DEADLINE, "the exec'd shell to exit", || !alive(pid));
    assert_eq!(procs_in_pidns(init), [init]);
}

#[test]
fn a_terminal_without_console_socket_or_foreground_fails_cleanly() {
    let env = Env::new("tty-nosock");
    let mut b = env.bundle();
    b.set("/process/terminal", json!(true));
    b.args(&["sh"]);
    let id = env.id();
    env.create(&b, &id).fails_with("cannot allocate tty");
    env.brig()
        .args(["run", "--detach", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .fails_with("cannot allocate tty");
    env.assert_nothing_left_behind("a terminal without a console socket");

    let (sid, init) = sleeper(&env, |_| {});
    exec(&env, &["--tty", "--detach"], &sid, &["sh"]).fails_with("cannot allocate tty");
    assert_eq!(
        procs_in_pidns(init),
        [init],
        "the refused exec left a process"
    );
}

// ---------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------

#[test]
fn preserve_fds_passes_exactly_fds_0_to_4_and_nothing_else() {
    let env = Env::new("fds-exact");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    cluttered(&env, env.brig())
        .args(["run", "--detach", "--preserve-fds", "2", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let init = init_pid(&env, &id);
    let fds = fds_of(init);
    assert_eq!(fd_numbers(init), [0, 1, 2, 3, 4], "init's fds: {fds:?}");
    assert!(
        fds[3].1.ends_with("fd3.txt") && fds[4].1.ends_with("fd4.txt"),
        "{fds:?}"
    );

    // exec: inside, from the shell itself (no directory fd of its own).
    let script = format!("{LIST_FDS}; cat <&3; cat <&4");
    let out = cluttered(&env, env.brig())
        .args(["exec", "--preserve-fds", "2", &id, "sh", "-c", &script])
        .run()
        .ok();
    assert_eq!(out.stdout, "0 1 2 3 4 \ncontent-3\ncontent-4\n", "{out}");
    let out = cluttered(&env, env.brig())
        .args(["exec", &id, "sh", "-c", LIST_FDS])
        .run()
        .ok();
    assert_eq!(out.stdout, "0 1 2 \n", "without --preserve-fds: {out}");
    // `ls /proc/self/fd` also lists ls's own directory fd: the lowest free
    // number, here 3; nothing else.
    let out = cluttered(&env, env.brig())
        .args(["exec", &id, "ls", "/proc/self/fd"])
        .run()
        .ok();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );

    // exec, from the host.
    let pid_file = env.dir.join("e.pid");
    cluttered(&env, env.brig())
        .args(["exec", "--detach", "--preserve-fds", "2", "--pid-file"])
        .arg(&pid_file)
        .args([id.as_str(), "sleep", "1000"])
        .run()
        .ok();
    let p = read_pid_file(&pid_file);
    wait_execd(p);
    assert_eq!(fd_numbers(p), [0, 1, 2, 3, 4], "{:?}", fds_of(p));
    let pid_file = env.dir.join("f.pid");
    cluttered(&env, env.brig())
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args([id.as_str(), "sleep", "1000"])
        .run()
        .ok();
    let p = read_pid_file(&pid_file);
    wait_execd(p);
    assert_eq!(fd_numbers(p), [0, 1, 2], "{:?}", fds_of(p));
}

const LISTEN_REPORT: &str = "env | grep ^LISTEN_ | sort; echo ---; for i in 0 1 2 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$i ] && printf '%s ' $i; done; echo; echo ---; cat <&3 2>/dev/null; cat <&4 2>/dev/null; true";

fn listen_fds(env: &Env) -> Vec<(RawFd, File)> {
    (3..=6)
        .map(|n| {
            (
                n,
                content_file(env, &format!("l{n}.txt"), &format!("listen-{n}\n")),
            )
        })
        .collect()
}

#[test]
fn listen_fds_are_passed_for_socket_activation() {
    let env = Env::new("listen-fds");
    let mut b = env.bundle();
    b.sh(LISTEN_REPORT);
    b.write();
    let want = "LISTEN_FDS=2\nLISTEN_PID=1\n---\n0 1 2 3 4 \n---\nlisten-3\nlisten-4\n";
    let bundle = b.dir.clone();
    for prefix in ["LISTEN_FDS=2", "LISTEN_FDS=2 LISTEN_PID=$$"] {
        let id = env.id();
        let out = brig_via_sh(
            &env,
            &format!("export {prefix};"),
            &[
                &OsStrLike::S("run"),
                &OsStrLike::S("--bundle"),
                &OsStrLike::P(&bundle),
                &OsStrLike::S(&id),
            ],
            listen_fds(&env),
        );
        assert!(out.status.success(), "{out}");
        assert_eq!(out.stdout, want, "{prefix}: {out}");
    }
    // For another process: nothing is passed.
    let id = env.id();
    let out = brig_via_sh(
        &env,
        "export LISTEN_FDS=2 LISTEN_PID=1;",
        &[
            &OsStrLike::S("run"),
            &OsStrLike::S("--bundle"),
            &OsStrLike::P(&bundle),
            &OsStrLike::S(&id),
        ],
        listen_fds(&env),
    );
    assert!(out.status.success(), "{out}");
    assert_eq!(
        out.stdout, "---\n0 1 2 \n---\n",
        "LISTEN_PID of another process: {out}"
    );

    // exec too.
    let (sid, _) = sleeper(&env, |_| {});
    let out = brig_via_sh(
        &env,
        "export LISTEN_FDS=2;",
        &[
            &OsStrLike::S("exec"),
            &OsStrLike::S(&sid),
            &OsStrLike::S("sh"),
            &OsStrLike::S("-c"),
            &OsStrLike::S(LISTEN_REPORT),
        ],
        listen_fds(&env),
    );
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout, want, "exec with LISTEN_FDS=2: {out}");
}

#[test]
fn pidfd_socket_sends_a_pidfd_of_the_new_process() {
    let env = Env::new("pidfd");
    // run --detach
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    let (l, sock) = listener(&env, "p1.sock");
    env.brig()
        .args(["run", "--detach", "--pidfd-socket"])
        .arg(&sock)
        .arg("--bundle")
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let (fd, _) = receive_fd(&l, "the pidfd socket of run");
    let init = init_pid(&env, &id);
    assert_eq!(pidfd_pid(&fd), init, "run's pidfd");

    // create
    let cid = env.id();
    let (l, sock) = listener(&env, "p2.sock");
    b.write();
    env.brig()
        .args(["create", "--pidfd-socket"])
        .arg(&sock)
        .arg("--bundle")
        .arg(&b.dir)
        .arg(&cid)
        .run()
        .ok();
    let (cfd, _) = receive_fd(&l, "the pidfd socket of create");
    assert_eq!(pidfd_pid(&cfd), init_pid(&env, &cid), "create's pidfd");

    // exec
    let (l, sock) = listener(&env, "p3.sock");
    let sock_s = sock.display().to_string();
    let pid = exec_detached(&env, &["--pidfd-socket", &sock_s], &id, &["sleep", "1000"]);
    let (efd, _) = receive_fd(&l, "the pidfd socket of exec");
    assert_eq!(pidfd_pid(&efd), pid, "exec's pidfd");
    // It is a handle on that very process: signal through it, see it exit.
    // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            efd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "pidfd_send_signal: {}",
        std::io::Error::last_os_error()
    );
    let mut pfd = [nix::poll::PollFd::new(
        efd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16)).expect("poll pidfd");
    assert_eq!(n, 1, "the pidfd did not report the exit");
    assert!(alive(init), "the init is untouched");
}

// ---------------------------------------------------------------------------
// Session keyrings
// ---------------------------------------------------------------------------

// busybox has no keyctl and /proc/keys is masked (and shows no possession
// anyway), so the test binary itself is the probe: run inside the container
// with the host's libraries bound in, it asks the kernel for its session
// keyring (KEYCTL_GET_KEYRING_ID, KEYCTL_DESCRIBE) and prints it.

const KEYRING_PROBE: &str = "BRIG_IT_KEYRING_PROBE";
const PROBE_ARGS: [&str; 6] = [
    "/probe",
    "--exact",
    "exec::keyring_probe",
    "--include-ignored",
    "--nocapture",
    "--test-threads=1",
];

/// "SERIAL DESCRIPTION" of the calling process's session keyring (the user
/// session keyring when it has none of its own).
fn session_keyring() -> String {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: keyctl with integer arguments.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    };
    assert!(
        id >= 0,
        "keyctl(GET_KEYRING_ID): {}",
        std::io::Error::last_os_error()
    );
    let mut buf = [0u8; 512];
    // SAFETY: DESCRIBE writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            id,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    assert!(
        n > 0,
        "keyctl(DESCRIBE): {}",
        std::io::Error::last_os_error()
    );
    let text = String::from_utf8_lossy(&buf[..(n as usize).min(buf.len())]);
    let desc = text
        .trim_end_matches('\0')
        .rsplit(';')
        .next()
        .unwrap_or_default();
    format!("{id} {desc}")
}

#[test]
#[ignore = "helper: runs inside containers for the keyring tests"]
fn keyring_probe() {
    if std::env::var_os(KEYRING_PROBE).is_some() {
        println!("session-keyring={}", session_keyring());
    }
}

/// A bundle whose rootfs can run this test binary as /probe.
fn probe_bundle(env: &Env) -> Bundle {
    let mut b = env.bundle_with_private_rootfs();
    for d in ["lib", "lib64", "usr/lib", "usr/lib64"] {
        let host = Path::new("/").join(d);
        let inside = b.rootfs.join(d);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&host).expect("readlink");
                if fs::symlink_metadata(&inside).is_err() {
                    std::os::unix::fs::symlink(target, &inside).expect("symlink in rootfs");
                }
            }
            Ok(m) if m.is_dir() => {
                fs::create_dir_all(&inside).expect("mkdir in rootfs");
                b.bind(&host, &format!("/{d}"), &["rbind", "ro"]);
            }
            _ => {}
        }
    }
    File::create(b.rootfs.join("probe")).expect("mount target for the probe");
    let exe = std::env::current_exe().expect("the test binary");
    b.bind(&exe, "/probe", &["bind", "ro"]);
    b
}

fn probe_output(out: &str) -> String {
    // libtest prints the test's name on the same line.
    out.lines()
        .find_map(|l| l.split_once("session-keyring=").map(|(_, k)| k.trim()))
        .unwrap_or_else(|| panic!("the probe printed no keyring:\n{out}"))
        .to_string()
}

#[test]
fn the_container_gets_a_fresh_session_keyring_unless_no_new_keyring() {
    let env = Env::new("keyring");
    let mine = session_keyring();
    let mut b = probe_bundle(&env);
    let mut vars: Vec<Value> = b
        .get("/process/env")
        .as_array()
        .cloned()
        .unwrap_or_default();
    vars.push(json!(format!("{KEYRING_PROBE}=1")));
    b.set("/process/env", Value::Array(vars));
    b.args(&PROBE_ARGS);
    let fresh = probe_output(&env.run_ok(&b));
    let (serial, desc) = fresh.split_once(' ').expect("serial and description");
    let id_of_run = desc
        .strip_prefix("_ses.")
        .unwrap_or_else(|| panic!("the container's session keyring is {desc:?}, not _ses.<id>"));
    assert!(
        id_of_run.starts_with("keyring-"),
        "named after the container: {desc}"
    );
    assert_ne!(
        serial,
        mine.split(' ').next().unwrap(),
        "the caller's keyring leaked"
    );

    b.write();
    let id = env.id();
    let out = env
        .brig()
        .args(["run", "--no-new-keyring", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    assert_eq!(
        probe_output(&out.stdout),
        mine,
        "--no-new-keyring keeps the caller's"
    );

    // exec joins the container's keyring too.
    let id = env.id();
    b.args(&["sleep", "1000"]);
    b.write();
    env.run_detached(&b, &id);
    let flag = format!("{KEYRING_PROBE}=1");
    let out = exec(&env, &["-e", &flag], &id, &PROBE_ARGS).ok();
    let got = probe_output(&out.stdout);
    assert!(
        got.ends_with(&format!(" _ses.{id}")),
        "exec's session keyring: {got}"
    );
}

#[test]
fn exec_into_a_no_new_keyring_container_keeps_the_callers_keyring() {
    // runc records --no-new-keyring in the container's config and its exec
    // (setns init) skips JoinSessionKeyring for such a container.
    let env = Env::new("keyring-exec");
    let mine = session_keyring();
    let mut b = probe_bundle(&env);
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    env.brig()
        .args(["run", "--detach", "--no-new-keyring", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let flag = format!("{KEYRING_PROBE}=1");
    let out = exec(&env, &["-e", &flag], &id, &PROBE_ARGS).ok();
    assert_eq!(
        probe_output(&out.stdout),
        mine,
        "exec into a --no-new-keyring container joined a new keyring"
    );
}
