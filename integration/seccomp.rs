//! linux.seccomp in real containers: denied syscalls get their errno, KILL
//! kills, argument filters, the engines' real profiles, a bad profile fails
//! early, and SCMP_ACT_NOTIFY with a small agent answering notifications.

use crate::harness::*;
use serde_json::{json, Value};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;

fn deny(names: &[&str], action: &str, errno: Option<u32>) -> Value {
    let mut rule = json!({"names": names, "action": action});
    if let Some(e) = errno {
        rule["errnoRet"] = json!(e);
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW",
           "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
           "syscalls": [rule]})
}

#[test]
fn denied_mkdir_gets_eperm() {
    let env = Env::new("sc-eperm");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None),
    );
    b.sh("mkdir /tmp/x 2>&1; echo rc=$?; rmdir /nonexistent 2>&1 | grep -c 'No such'");
    let out = env.run_ok(&b);
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    // Other syscalls are untouched.
    assert!(out.ends_with("1\n"), "{out}");
}

#[test]
fn custom_errno_ret() {
    let env = Env::new("sc-errno");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        deny(
            &["mkdir", "mkdirat"],
            "SCMP_ACT_ERRNO",
            Some(libc::EROFS as u32),
        ),
    );
    b.sh("mkdir /tmp/x 2>&1; echo rc=$?");
    let out = env.run_ok(&b);
    assert!(out.contains("Read-only file system"), "{out}");
}

#[test]
fn default_errno_ret_applies_to_the_default_action() {
    let env = Env::new("sc-deferr");
    let mut b = env.bundle();
    // Docker's profile without mkdir: it falls to the default action.
    let mut profile = engine_profile("docker");
    for rule in profile["syscalls"].as_array_mut().expect("rules") {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| n != "mkdir" && n != "mkdirat");
        }
    }
    profile["defaultErrnoRet"] = json!(libc::EXDEV);
    b.set("/linux/seccomp", profile);
    b.sh("mkdir /tmp/x 2>&1; echo rc=$?");
    let out = env.run_ok(&b);
    assert!(out.contains("cross-device"), "{out}");
}

#[test]
fn kill_process_kills_with_sigsys() {
    let env = Env::new("sc-kill");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_KILL_PROCESS", None),
    );
    // A child of the shell dies, the shell goes on...
    b.sh("echo before; mkdir /tmp/x; echo after $?");
    let out = env.run_ok(&b);
    assert_eq!(out, format!("before\nafter {}\n", 128 + libc::SIGSYS));
    // ... and so does the container's process itself.
    b.sh("exec mkdir /tmp/x");
    let out = env.run(&b);
    assert_eq!(out.code(), Some(128 + libc::SIGSYS), "{out}");
}

#[test]
fn kill_thread_kills_a_single_threaded_process() {
    let env = Env::new("sc-killt");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_KILL", None),
    );
    b.sh("exec mkdir /tmp/x");
    let out = env.run(&b);
    assert_eq!(out.code(), Some(128 + libc::SIGSYS), "{out}");
}

#[test]
fn log_action_lets_the_syscall_run() {
    let env = Env::new("sc-log");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_LOG", None),
    );
    b.sh("mkdir /tmp/x && echo made");
    let logged = || {
        std::process::Command::new("dmesg")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.contains("code=0x7ffc0000") && l.contains("syscall=83"))
                    .count()
            })
    };
    let before = logged();
    assert_eq!(env.run_ok(&b), "made\n");
    // The kernel logs it (an audit line in the kernel log, when readable).
    if let (Some(before), Some(after)) = (before, logged()) {
        assert!(after > before, "no audit line for the logged mkdir");
    }
}

#[test]
fn personality_allowed_for_one_value_only() {
    let env = Env::new("sc-args");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]}]}),
    );
    // linux32 asks for PER_LINUX32 (8), linux64 for PER_LINUX (0).
    b.sh("linux32 echo ok32; linux64 echo ok64 2>&1; echo rc=$?");
    let out = env.run_ok(&b);
    assert!(out.contains("ok32"), "{out}");
    assert!(!out.contains("ok64"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn no_new_privileges_false_still_loads_the_filter() {
    let env = Env::new("sc-nonnp");
    let mut b = env.bundle();
    b.set("/process/noNewPrivileges", json!(false));
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None),
    );
    b.sh("mkdir /tmp/x 2>&1; grep NoNewPrivs /proc/self/status");
    let out = env.run_ok(&b);
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
}

#[test]
fn exec_processes_get_the_containers_filter() {
    let env = Env::new("sc-exec");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.set(
        "/linux/seccomp",
        deny(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None),
    );
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let out = env
        .brig()
        .args(["exec", &id, "sh", "-c", "mkdir /tmp/e 2>&1; echo rc=$?"])
        .run()
        .ok();
    assert!(out.stdout.contains("Operation not permitted"), "{out}");
}

fn engine_profile(which: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "integration/fixtures/engine-configs/{which}-create-config.json"
    ));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    v["linux"]["seccomp"].clone()
}

#[test]
fn docker_default_profile_runs_busybox() {
    let env = Env::new("sc-docker");
    let mut b = env.bundle();
    b.set("/linux/seccomp", engine_profile("docker"));
    b.sh(
        "echo ok; mkdir /tmp/d && echo made; unshare -m true 2>&1; grep Seccomp: /proc/self/status",
    );
    let out = env.run_ok(&b);
    assert!(out.starts_with("ok\nmade\n"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "unshare is denied: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn podman_default_profile_runs_busybox() {
    let env = Env::new("sc-podman");
    let mut b = env.bundle();
    b.set("/linux/seccomp", engine_profile("podman"));
    b.sh("echo ok; hostname foo 2>&1; true");
    let out = env.run_ok(&b);
    assert!(out.starts_with("ok\n"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "sethostname is denied: {out}"
    );
}

#[test]
fn bad_profile_fails_before_anything_runs() {
    let env = Env::new("sc-bad");
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 7, "value": 8, "op": "SCMP_CMP_EQ"}]}]}),
    );
    b.sh("echo ran");
    let out = env
        .run(&b)
        .fails_with("linux.seccomp.syscalls[1].args[0].index");
    assert!(!out.stdout.contains("ran"), "{out}");
    env.assert_nothing_left_behind("bad seccomp profile");
}

// ---------------------------------------------------------------------------
// SCMP_ACT_NOTIFY
// ---------------------------------------------------------------------------

/// struct seccomp_notif.
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

/// struct seccomp_notif_resp.
#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// Accepts one connection, receives runc's message and the listener, and
/// answers one notification with `errno`; returns the message.
fn agent(listener: UnixListener, errno: i32) -> Value {
    let (conn, _) = listener.accept().expect("agent accept");
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .expect("agent recvmsg");
        let mut fd = None;
        for c in msg.cmsgs().expect("cmsgs") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        (
            msg.bytes,
            fd.expect("the listener fd came with the message"),
        )
    };
    // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let state: Value = serde_json::from_slice(&buf[..len]).expect("agent message is JSON");
    let mut n = Notif::default();
    // SAFETY: NOTIF_RECV fills the zeroed struct we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut n) };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    assert!(
        n.nr == libc::SYS_mkdir as i32 || n.nr == libc::SYS_mkdirat as i32,
        "notified for syscall {}",
        n.nr
    );
    let resp = NotifResp {
        id: n.id,
        val: 0,
        error: -errno,
        flags: 0,
    };
    // SAFETY: NOTIF_SEND reads the response we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
    state
}

#[test]
fn notify_agent_answers_for_the_container() {
    let env = Env::new("sc-notify");
    let sock = env.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind agent socket");
    let agent = thread::spawn(move || agent(listener, libc::ENOLINK));
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
               "listenerMetadata": "meta-data",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    b.sh("mkdir /tmp/x 2>&1; echo rc=$?");
    let out = env.run_ok(&b);
    assert!(out.contains("Link has been severed"), "{out}");
    let state = agent.join().expect("agent thread");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "meta-data", "{state}");
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert!(state["pid"].as_i64().unwrap_or(0) > 1, "{state}");
    assert_eq!(state["pid"], state["state"]["pid"], "{state}");
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(
        state["state"]["bundle"],
        json!(b.dir.canonicalize().expect("bundle")),
        "{state}"
    );
}

// ---------------------------------------------------------------------------
// 32-bit x86 syscalls
// ---------------------------------------------------------------------------

/// A static i386 ELF that calls mkdir("/tmp/x", 0755) through `int 0x80`
/// (i386 syscall 39; on x86_64, 39 is getpid) and exits with the errno it
/// got, 0 on success.
fn i386_mkdir_binary() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const CODE_OFF: u32 = 52 + 32;
    let mut code: Vec<u8> = Vec::new();
    let path_at = BASE + CODE_OFF + 28;
    code.extend([0xb8, 39, 0, 0, 0]); // mov eax, 39 (mkdir)
    code.push(0xbb); // mov ebx, path
    code.extend(path_at.to_le_bytes());
    code.extend([0xb9, 0xed, 0x01, 0, 0]); // mov ecx, 0755
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xf7, 0xd8]); // neg eax
    code.extend([0x89, 0xc3]); // mov ebx, eax
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (exit)
    code.extend([0xcd, 0x80]); // int 0x80
    assert_eq!(code.len(), 28);
    code.extend(b"/tmp/x\0");
    let total = CODE_OFF + code.len() as u32;
    let mut elf: Vec<u8> = Vec::new();
    // ELF header: 32-bit, little-endian, executable, i386.
    elf.extend([0x7f, b'E', b'L', b'F', 1, 1, 1, 0]);
    elf.extend([0u8; 8]);
    elf.extend(2u16.to_le_bytes()); // e_type EXEC
    elf.extend(3u16.to_le_bytes()); // e_machine 386
    elf.extend(1u32.to_le_bytes()); // e_version
    elf.extend((BASE + CODE_OFF).to_le_bytes()); // e_entry
    elf.extend(52u32.to_le_bytes()); // e_phoff
    elf.extend(0u32.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend(52u16.to_le_bytes()); // e_ehsize
    elf.extend(32u16.to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend([0u8; 6]); // no sections
                          // One PT_LOAD of the whole file, read + execute.
    for v in [1u32, 0, BASE, BASE, total, total, 5, 0x1000] {
        elf.extend(v.to_le_bytes());
    }
    elf.extend(code);
    elf
}

#[test]
fn x86_syscalls_are_filtered_by_the_x86_part() {
    let env = Env::new("sc-x86");
    let mut b = env.bundle_with_private_rootfs();
    let bin = b.rootfs.join("mkdir32");
    std::fs::write(&bin, i386_mkdir_binary()).expect("write the i386 binary");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    b.args(&["/mkdir32"]);
    // Without a profile it runs (or the kernel has no ia32 support).
    let out = env.run(&b);
    if out.code() != Some(0) {
        eprintln!("skipped: this kernel does not run i386 binaries: {out}");
        return;
    }
    std::fs::remove_dir(b.rootfs.join("tmp/x")).expect("mkdir32 made /tmp/x");
    // The x86 part denies its own mkdir (39); x86_64's 39 (getpid) is untouched.
    let rules = json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV}]);
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": rules}),
    );
    let out = env.run(&b);
    assert_eq!(out.code(), Some(libc::EXDEV), "{out}");
    // Without SCMP_ARCH_X86 the i386 call is a foreign architecture: killed.
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}),
    );
    let out = env.run(&b);
    assert_eq!(out.code(), Some(128 + libc::SIGSYS), "{out}");
}

#[test]
fn notify_agent_answers_for_exec_processes() {
    let env = Env::new("sc-notify-exec");
    let sock = env.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind agent socket");
    // The init's listener arrives first (at create); the exec'd process's
    // second, relayed by brig with its host pid.
    let agent = thread::spawn(move || {
        let (first, _) = listener
            .accept()
            .expect("agent accepts the init's connection");
        let exec_state = agent(listener, libc::EXDEV);
        drop(first);
        exec_state
    });
    let mut b = env.bundle();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    b.args(&["sleep", "30"]);
    b.write();
    let id = env.id();
    env.run_detached(&b, &id);
    let init_pid = env.state(&id)["pid"].as_i64().expect("init pid");
    let out = env
        .brig()
        .args(["exec", &id, "sh", "-c", "mkdir /tmp/y 2>&1; echo rc=$?"])
        .run()
        .ok();
    assert!(out.stdout.contains("cross-device link"), "{out}");
    let state = agent.join().expect("agent thread");
    assert_eq!(state["state"]["status"], "running", "{state}");
    let pid = state["pid"].as_i64().unwrap_or(0);
    assert!(
        pid > 1 && pid != init_pid,
        "the exec'd process's host pid: {state}"
    );
    assert_eq!(state["pid"], state["state"]["pid"], "{state}");
    env.brig().args(["delete", "--force", &id]).run().ok();
    env.assert_nothing_left_behind("notify exec");
}
