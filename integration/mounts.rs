//! config.json `mounts`, maskedPaths, readonlyPaths and root.readonly, as
//! /proc/self/mountinfo and file operations inside the container show them.

use crate::harness::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// Shell function `ro CMD...`: prints `refused` when CMD fails because the
/// file system is read-only, `writable` when it succeeds, and the error
/// otherwise, so a refusal for any other reason (say, a missing /dev/null
/// for a redirection) can never pass for read-only.
const RO: &str = "ro() { if out=$(\"$@\" 2>&1); then echo writable; \
    else case \"$out\" in *'Read-only file system'*) echo refused;; *) echo \"error: $out\";; esac; fi; }\n";

/// Prints the container's mountinfo after `script`'s own output.
fn with_mountinfo(script: &str) -> String {
    format!("{RO}{script}\necho ---\ncat /proc/self/mountinfo")
}

#[test]
fn tmpfs_gets_its_size_mode_and_flags() {
    let env = Env::new("tmpfs");
    let mut b = env.bundle();
    b.tmpfs(
        "/mnt",
        &["nosuid", "nodev", "noexec", "size=1m", "mode=1750"],
    );
    b.sh(&with_mountinfo("stat -c %a /mnt"));
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(parts[0].trim(), "1750", "mode of the tmpfs root");
    let mounts = parse_mountinfo(&parts[1]);
    let m = mount_at(&mounts, "/mnt");
    assert_eq!(m.fstype, "tmpfs");
    for opt in ["nosuid", "nodev", "noexec", "size=1024k", "mode=1750"] {
        assert!(m.has(opt), "/mnt lacks {opt}: {m:?}");
    }
}

#[test]
fn bind_mounts_honour_ro_rw_and_noexec() {
    let env = Env::new("binds");
    let data = env.mkdir("hostdata");
    fs::write(data.join("hello.txt"), "hello from host\n").expect("write hello.txt");
    fs::write(data.join("run.sh"), "#!/bin/sh\necho ran\n").expect("write run.sh");
    fs::set_permissions(data.join("run.sh"), fs::Permissions::from_mode(0o755))
        .expect("chmod run.sh");
    let mut b = env.bundle();
    // Targets below a fresh tmpfs are created there, not in the shared rootfs.
    b.tmpfs("/mnt", &[]);
    b.bind(&data, "/mnt/ro", &["rbind", "ro"]);
    b.bind(&data, "/mnt/rw", &["rbind", "rw"]);
    b.bind(&data, "/mnt/nx", &["bind", "noexec", "nosuid", "nodev"]);
    b.sh(&with_mountinfo(
        "cat /mnt/ro/hello.txt
         echo ro-$(ro touch /mnt/ro/x)
         echo written > /mnt/rw/from-container && echo rw-ok
         /mnt/rw/run.sh
         /mnt/nx/run.sh; echo nx-status=$?",
    ));
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(
        parts[0], "hello from host\nro-refused\nrw-ok\nran\nnx-status=126",
        "behaviour of ro, rw and noexec binds"
    );
    assert_eq!(
        fs::read_to_string(data.join("from-container")).expect("the rw bind wrote to the host dir"),
        "written\n"
    );
    assert!(!data.join("x").exists(), "the ro bind let a file through");
    let mounts = parse_mountinfo(&parts[1]);
    assert!(
        mount_at(&mounts, "/mnt/ro")
            .options
            .contains(&"ro".to_string()),
        "{mounts:#?}"
    );
    assert!(
        mount_at(&mounts, "/mnt/rw")
            .options
            .contains(&"rw".to_string()),
        "{mounts:#?}"
    );
    let nx = mount_at(&mounts, "/mnt/nx");
    for opt in ["noexec", "nosuid", "nodev"] {
        assert!(
            nx.options.contains(&opt.to_string()),
            "/mnt/nx lacks {opt}: {nx:?}"
        );
    }
}

#[test]
fn mount_into_a_missing_target_creates_it() {
    let env = Env::new("mkdirtarget");
    let mut b = env.bundle_with_private_rootfs();
    let file = env.dir.join("extra.conf");
    fs::write(&file, "extra=1\n").expect("write extra.conf");
    b.tmpfs("/new/deep/dir", &["size=64k"]);
    // A file source needs a file target.
    b.bind(&file, "/etc/extra.conf", &["bind", "ro"]);
    b.sh(&with_mountinfo(
        "stat -c %F /new/deep/dir; cat /etc/extra.conf",
    ));
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(parts[0], "directory\nextra=1");
    let mounts = parse_mountinfo(&parts[1]);
    assert_eq!(mount_at(&mounts, "/new/deep/dir").fstype, "tmpfs");
    mount_at(&mounts, "/etc/extra.conf");
    assert!(
        b.rootfs.join("new/deep/dir").is_dir(),
        "target directory not created in the rootfs"
    );
    let target =
        fs::symlink_metadata(b.rootfs.join("etc/extra.conf")).expect("file target created");
    assert!(
        target.is_file(),
        "a file bind's target must be a file, got {target:?}"
    );
}

#[test]
fn root_readonly_makes_the_rootfs_read_only() {
    let env = Env::new("rootro");
    // Private: if readonly were ignored the write would land in the rootfs.
    let mut b = env.bundle_with_private_rootfs();
    b.set("/root/readonly", json!(true));
    b.tmpfs("/tmp", &[]);
    b.sh(&with_mountinfo(
        "echo root-$(ro touch /bin/x)
         touch /tmp/x && echo tmp-ok",
    ));
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(parts[0], "root-refused\ntmp-ok");
    assert!(!b.rootfs.join("bin/x").exists());
    let mounts = parse_mountinfo(&parts[1]);
    assert!(
        mount_at(&mounts, "/").options.contains(&"ro".to_string()),
        "{mounts:#?}"
    );
}

#[test]
fn masked_paths_hide_files_and_directories() {
    let env = Env::new("masked");
    let data = env.mkdir("hostdata");
    fs::write(data.join("secret.txt"), "top secret\n").expect("write secret.txt");
    fs::write(data.join("open.txt"), "open\n").expect("write open.txt");
    fs::create_dir(data.join("secretdir")).expect("mkdir secretdir");
    fs::write(data.join("secretdir/inner.txt"), "inner\n").expect("write inner.txt");
    let mut b = env.bundle();
    b.tmpfs("/mnt", &[]);
    b.bind(&data, "/mnt/data", &["rbind", "rw"]);
    b.set(
        "/linux/maskedPaths",
        json!([
            "/proc/timer_list",
            "/sys/firmware",
            "/mnt/data/secret.txt",
            "/mnt/data/secretdir",
            "/proc/does-not-exist"
        ]),
    );
    b.sh(&format!(
        "{RO}echo \"[$(cat /mnt/data/secret.txt)]\"
         echo \"[$(cat /proc/timer_list)]\"
         stat -c %t:%T /proc/timer_list
         ls -A /mnt/data/secretdir | wc -l
         ls -A /sys/firmware | wc -l
         echo dir-$(ro touch /mnt/data/secretdir/x)
         cat /mnt/data/open.txt"
    ));
    let out = env.run_ok(&b);
    // Masked files read empty (/dev/null is bound over them), masked
    // directories are empty and read-only, neighbours are untouched, and a
    // masked path that does not exist is skipped.
    assert_eq!(out, "[]\n[]\n1:3\n0\n0\ndir-refused\nopen\n");
    assert!(!data.join("secretdir/x").exists());
}

#[test]
fn readonly_paths_are_read_only() {
    let env = Env::new("ropaths");
    let data = env.mkdir("hostdata");
    fs::create_dir(data.join("rodir")).expect("mkdir rodir");
    fs::create_dir(data.join("rwdir")).expect("mkdir rwdir");
    let mut b = env.bundle();
    b.tmpfs("/mnt", &[]);
    b.bind(&data, "/mnt/data", &["rbind", "rw"]);
    b.set(
        "/linux/readonlyPaths",
        json!(["/proc/sys", "/mnt/data/rodir", "/does/not/exist"]),
    );
    b.sh(&with_mountinfo(
        "echo rodir-$(ro touch /mnt/data/rodir/x)
         touch /mnt/data/rwdir/x && echo rwdir-ok
         echo procsys-$(ro sh -c 'echo x > /proc/sys/kernel/domainname')",
    ));
    let out = env.run_ok(&b);
    let parts = sections(&out);
    assert_eq!(parts[0], "rodir-refused\nrwdir-ok\nprocsys-refused");
    assert!(!data.join("rodir/x").exists());
    assert!(data.join("rwdir/x").exists());
    let mounts = parse_mountinfo(&parts[1]);
    for p in ["/proc/sys", "/mnt/data/rodir"] {
        assert!(
            mount_at(&mounts, p).options.contains(&"ro".to_string()),
            "{p} is not ro"
        );
    }
}

/// A tmpfs mounted on the host for one test, unmounted when dropped (even
/// after a failed assertion), so no host mount outlives the test.
struct HostTmpfs(std::path::PathBuf);

impl HostTmpfs {
    fn mount(at: &std::path::Path) -> HostTmpfs {
        let c = |p: &str| std::ffi::CString::new(p).expect("no NUL in mount arguments");
        let target = c(&at.to_string_lossy());
        let (src, fstype, data) = (c("tmpfs"), c("tmpfs"), c("size=1m"));
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            at.display(),
            std::io::Error::last_os_error()
        );
        HostTmpfs(at.to_path_buf())
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        if let Ok(p) = std::ffi::CString::new(self.0.to_string_lossy().as_bytes()) {
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn rbind_carries_submounts_bind_does_not_and_rro_covers_them() {
    let env = Env::new("rbind");
    let data = env.mkdir("hostdata");
    let sub = data.join("sub");
    fs::create_dir(&sub).expect("mkdir sub");
    let _submount = HostTmpfs::mount(&sub);
    fs::write(sub.join("in-submount"), "").expect("write into the submount");
    let mut b = env.bundle();
    b.tmpfs("/mnt", &[]);
    b.bind(&data, "/mnt/rbind", &["rbind", "rw"]);
    b.bind(&data, "/mnt/bind", &["bind", "rw"]);
    // Recursive read-only (mount_setattr): the submount must be read-only too.
    b.bind(&data, "/mnt/rro", &["rbind", "rro"]);
    b.sh(&format!(
        "{RO}ls /mnt/rbind/sub; echo ---
         ls /mnt/bind/sub; echo ---
         echo rro-sub-$(ro touch /mnt/rro/sub/x)
         echo rro-$(ro touch /mnt/rro/x)"
    ));
    let out = env.run_ok(&b);
    assert_eq!(
        sections(&out),
        ["in-submount", "", "rro-sub-refused\nrro-refused"],
        "rbind shows the submount, bind shows the bare directory, rro covers both"
    );
    assert!(!sub.join("x").exists() && !data.join("x").exists());
}
