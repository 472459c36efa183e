//! Escapes runc has had (CVE-2019-5736, CVE-2021-30465, CVE-2023-27561,
//! CVE-2024-21626) and the descriptor hygiene around them.

use crate::harness::*;
use serde_json::json;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;

/// A bind mount whose destination is a symlink leading out of the rootfs
/// must land inside the rootfs or be refused, never on the host path.
fn symlinked_destination_stays_inside(name: &str, link_target: impl Fn(&Path) -> String) {
    let env = Env::new(name);
    let outside = env.mkdir("outside");
    let payload = env.mkdir("payload");
    fs::write(payload.join("marker.txt"), "payload\n").expect("write marker");
    let mut b = env.bundle_with_private_rootfs();
    symlink(link_target(&outside), b.rootfs.join("evil")).expect("plant the symlink");
    b.bind(&payload, "/evil", &["rbind", "ro"]);
    b.sh("echo started; cat /evil/marker.txt");
    let out = env.run(&b);
    if out.stdout.contains("started") {
        eprintln!("brig mounted the symlinked destination inside the rootfs");
        // It ran, so the mount must be where the container looks for it.
        assert!(
            out.success() && out.stdout == "started\npayload\n",
            "the mount did not land inside the rootfs: {out}"
        );
    } else {
        eprintln!(
            "brig refused the symlinked destination: {}",
            out.stderr_text().trim()
        );
        assert!(!out.success(), "{out}");
        env.assert_nothing_left_behind("refused symlinked destination");
    }
    let entries: Vec<_> = fs::read_dir(&outside)
        .expect("read outside")
        .flatten()
        .collect();
    assert!(
        entries.is_empty(),
        "the host directory behind the symlink changed: {entries:?}"
    );
    let leaked = mounts_mentioning(&outside);
    assert!(leaked.is_empty(), "mounted onto the host path: {leaked:?}");
}

#[test]
fn mount_destination_absolute_symlink_out_of_rootfs_stays_inside() {
    symlinked_destination_stays_inside("symlink-abs", |outside| outside.display().to_string());
}

#[test]
fn mount_destination_dotdot_symlink_out_of_rootfs_stays_inside() {
    symlinked_destination_stays_inside("symlink-rel", |outside| {
        // Enough `..` to climb out of any rootfs, then down to the host dir.
        format!(
            "{}{}",
            "../".repeat(30),
            outside.display().to_string().trim_start_matches('/')
        )
    });
}

#[test]
fn proc_as_a_symlink_in_the_rootfs_is_refused() {
    // CVE-2023-27561: a rootfs whose /proc is a symlink could redirect the
    // runtime's writes to /proc/self/attr and the like.
    let env = Env::new("procsymlink");
    let mut b = env.bundle_with_private_rootfs();
    fs::remove_dir(b.rootfs.join("proc")).expect("rmdir rootfs/proc");
    fs::create_dir(b.rootfs.join("fakeproc")).expect("mkdir fakeproc");
    symlink("/fakeproc", b.rootfs.join("proc")).expect("symlink rootfs/proc");
    b.args(&["true"]);
    b.write();
    let id = env.id();
    let out = env
        .brig()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run();
    assert!(!out.success(), "a symlinked /proc was accepted: {out}");
    assert!(
        out.stderr_text().contains("/proc"),
        "the error should name /proc: {out}"
    );
    env.assert_nothing_left_behind("symlinked /proc");
}

#[test]
fn proc_1_exe_is_the_user_binary_not_brig() {
    // CVE-2019-5736: the container's init must never be the runtime binary,
    // or root inside could overwrite brig on the host through /proc/1/exe.
    let env = Env::new("procexe");
    let mut b = env.bundle();
    b.args(&[
        "sh",
        "-c",
        "readlink /proc/1/exe; cmp /proc/1/exe /bin/busybox && echo same; echo checked; exec sleep 1000",
    ]);
    b.write();
    let id = env.id();
    let run = env
        .brig()
        .args(["run", "--detach", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let text = wait_for_content(&run.stdout_path, "checked");
    assert_eq!(text, "/bin/busybox\nsame\nchecked\n");
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    // From the host too: the init is busybox from the rootfs.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink exe of init");
    assert!(
        exe.ends_with("bin/busybox"),
        "init's exe is {}",
        exe.display()
    );
    assert_ne!(exe, Path::new(BRIG));
}

#[test]
fn cwd_through_proc_self_fd_cannot_leave_the_rootfs() {
    // CVE-2024-21626: a leaked descriptor of a host directory plus
    // cwd=/proc/self/fd/N put the process's cwd on the host.
    let env = Env::new("cwdfd");
    for n in 3..=9 {
        let mut b = env.bundle();
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        b.sh("pwd -P || echo CWD-OUTSIDE; echo done");
        let out = env.run(&b);
        eprintln!(
            "cwd /proc/self/fd/{n}: {}",
            if out.success() {
                out.stdout.trim().replace('\n', " ")
            } else {
                out.stderr_text().trim().to_string()
            }
        );
        if out.stdout.contains("done") {
            assert!(
                !out.stdout.contains("CWD-OUTSIDE"),
                "cwd /proc/self/fd/{n} is outside the container's root: {out}"
            );
            assert!(out.stdout.starts_with('/'), "{out}");
        } else {
            assert!(!out.success(), "{out}");
        }
    }
    env.assert_nothing_left_behind("cwd through /proc/self/fd");
}

/// Descriptors of a running container's init, seen from the host.
fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the init's fds")
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

fn temp_file(env: &Env, name: &str, content: &str) -> File {
    let path = env.dir.join(name);
    let mut f = File::create(&path).expect("create fd file");
    f.write_all(content.as_bytes()).expect("write fd file");
    File::open(&path).expect("reopen fd file for reading")
}

#[test]
fn no_descriptor_of_the_caller_reaches_the_container() {
    let env = Env::new("fdleak");
    let mut b = env.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = env.id();
    // A file and a host directory, not close-on-exec, the way a careless
    // caller would leave them.
    let dir = File::open(&env.dir).expect("open the test dir");
    env.brig()
        .fd(5, temp_file(&env, "leak5.txt", "leak"))
        .fd(6, dir)
        .args(["run", "--detach", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    let fds = fds_of(pid);
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        [0, 1, 2],
        "descriptors of the container's init: {fds:?}"
    );
}

#[test]
fn preserve_fds_passes_exactly_the_named_descriptors() {
    let env = Env::new("preserve");
    let mut b = env.bundle();
    b.sh("cat <&3; if [ -e /proc/$$/fd/4 ]; then echo fd4-open; else echo fd4-closed; fi; exec sleep 1000");
    b.write();
    let id = env.id();
    let out = env
        .brig()
        .fd(3, temp_file(&env, "fd3.txt", "preserved-three\n"))
        .fd(4, temp_file(&env, "fd4.txt", "not-preserved\n"))
        .args(["run", "--detach", "--preserve-fds", "1", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    let text = wait_for_content(&out.stdout_path, "fd4-");
    assert_eq!(text, "preserved-three\nfd4-closed\n");
    let pid = env.state(&id)["pid"].as_i64().expect("pid") as i32;
    let fds = fds_of(pid);
    assert_eq!(
        fds.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{fds:?}"
    );
    assert!(
        fds[3].1.ends_with("fd3.txt"),
        "fd 3 is not the preserved file: {fds:?}"
    );
}

#[test]
fn a_created_init_cannot_be_reached_through_proc_exe() {
    // CVE-2019-5736 before start: the init of a created container is still
    // brig's own process image. Another container sharing its pid namespace
    // (as a pod's containers do) must not be able to open /proc/1/exe, or
    // it could get a handle on the brig binary; a non-dumpable init denies it.
    let env = Env::new("dumpable");
    let mut first = env.bundle();
    first.args(&["sleep", "1000"]);
    let first_id = env.id();
    env.create(&first, &first_id).ok();
    let pid = env.state(&first_id)["pid"].as_i64().expect("pid");

    let mut second = env.bundle();
    second.namespace("pid", Some(&format!("/proc/{pid}/ns/pid")));
    // The first two lines show the shared pid namespace really is the first
    // container's (its init is pid 1 and visible), so the denials that follow
    // are about dumpability and nothing else.
    // `try CMD`: `denied` only for EACCES/EPERM, so no other failure (a
    // missing /dev/null, say) can pass for the protection.
    second.sh(
        "try() { if out=$(\"$@\" 2>&1); then echo allowed; else case \"$out\" in
             *'Permission denied'*|*'Operation not permitted'*) echo denied;; *) echo \"error: $out\";; esac; fi; }
         [ $$ != 1 ] && echo shares-pidns
         grep -q '^Name:' /proc/1/status && echo init-visible
         echo exe-link-$(try readlink -v /proc/1/exe)
         echo exe-open-$(try head -c 4 /proc/1/exe)",
    );
    assert_eq!(
        env.run_ok(&second),
        "shares-pidns\ninit-visible\nexe-link-denied\nexe-open-denied\n"
    );
    assert_eq!(env.status(&first_id), "created");
}
