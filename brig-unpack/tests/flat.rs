//! Flat unpacks of multi-layer images built here, checked entry by entry and
//! against `umoci unpack` when umoci is installed.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use brig_unpack::bundle::{unpack, UnpackOptions};
use common::*;

fn flat_opts() -> UnpackOptions {
    UnpackOptions {
        flat: true,
        progress: false,
        ..Default::default()
    }
}

fn check_rich(rootfs: &Path) {
    let t = tree(rootfs);
    let get = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(
        fs::read(rootfs.join("etc/passwd")).unwrap(),
        b"root:x:0:0:root:/root:/bin/sh\nsvc:x:1000:1000::/home/svc:/bin/sh\n"
    );
    assert_eq!(fs::read(rootfs.join("bin/tool")).unwrap(), b"tool v3");
    assert_eq!(get("bin/tool").mode, 0o700);
    // The hardlink kept the inode of the original, which later layers replaced.
    assert_eq!(fs::read(rootfs.join("bin/tool-hl")).unwrap(), b"tool v1");
    assert_eq!(get("bin/suid").mode, 0o4755);
    assert_eq!(get("bin/sgid").mode, 0o2711);
    assert_eq!(get("bin/sgid").gid, 10);
    assert_eq!(get("data/tmp").mode, 0o1777);
    let o = get("data/owned");
    assert_eq!((o.uid, o.gid, o.mode), (1000, 1001, 0o640));
    assert_eq!(o.mtime, 1_650_000_000);
    assert!(!t.contains_key("data/to-delete"));
    assert!(!t.contains_key("data/dir-to-delete"));
    assert!(!t.contains_key("data/dir-to-delete/inner"));
    assert_eq!(get("data/was-dir").kind, "file");
    assert_eq!(get("data/was-file").kind, "dir");
    assert!(!t.contains_key("opq/a"));
    assert!(!t.contains_key("opq/sub"));
    assert_eq!(get("opq/new").kind, "file");
    assert_eq!(get("opq").mode, 0o750);
    assert_eq!(get("lib").link, "usr/lib");
    assert_eq!(get("etc/abs").link, "/etc/group");
    assert_eq!(get("dev/null").kind, "char");
    assert_eq!(get("dev/null").rdev, nix::sys::stat::makedev(1, 3));
    assert_eq!(get("dev/null").mode, 0o666);
    assert_eq!(get("dev/loop0").kind, "block");
    assert_eq!(get("data/fifo").kind, "fifo");
    let x = get("data/xattr-file");
    assert_eq!(
        x.xattrs.get("user.test").map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!(
        x.xattrs.get("security.capability").map(Vec::as_slice),
        Some(CAP)
    );
    // A directory entry is the directory's whole state: re-stating it drops xattrs it no longer lists.
    assert!(get("data").xattrs.is_empty());
    assert_eq!(
        get("usr").xattrs.get("user.kept").map(Vec::as_slice),
        Some(&b"k"[..])
    );
    assert_eq!(get("new/deep").mode, 0o755);
    assert_eq!(get("new/deep/file").kind, "file");
    // Directory times are restored after later layers change their contents.
    assert_eq!(get("data").mtime, 1_600_000_000);
    assert_eq!(get("opq").mtime, 1_650_000_000);
    assert_eq!(get("usr/lib").mtime, 1_600_000_000);
}

#[test]
fn flat_rich_image_all_compressions() {
    if !is_root() {
        eprintln!("skipped: needs root for ownership and devices");
        return;
    }
    let t = TempDir::new("rich");
    let img = t.join("img");
    oci_layout(
        &img,
        &ImageSpec::new(rich_layers([Comp::Gzip, Comp::Zstd, Comp::None], true)),
        "latest",
    );
    let b = t.join("bundle");
    let r = unpack(&format!("oci:{}:latest", img.display()), &b, &flat_opts()).unwrap();
    assert_eq!(r.layers, 3);
    check_rich(&b.join("rootfs"));
    assert_eq!(
        fs::read(b.join("rootfs/usr/lib/libx.so")).unwrap(),
        b"through a symlinked parent"
    );
    assert!(b.join("config.json").is_file());
    assert_eq!(
        fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn all_three_transports_give_the_same_tree() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = TempDir::new("transports");
    let spec = ImageSpec::new(rich_layers([Comp::Gzip, Comp::None, Comp::Zstd], false));
    let img = t.join("img");
    oci_layout(&img, &spec, "v1");
    tar_dir(&img, &t.join("img.tar"));
    docker_archive(&t.join("docker.tar"), &spec, "example.com/rich:v1");
    let refs = [
        format!("oci:{}:v1", img.display()),
        format!("oci-archive:{}:v1", t.join("img.tar").display()),
        format!(
            "docker-archive:{}:example.com/rich:v1",
            t.join("docker.tar").display()
        ),
        format!("docker-archive:{}", t.join("docker.tar").display()),
    ];
    let mut trees = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let b = t.join(&format!("b{i}"));
        unpack(r, &b, &flat_opts()).unwrap_or_else(|e| panic!("{r}: {e}"));
        check_rich(&b.join("rootfs"));
        trees.push(tree(&b.join("rootfs")));
    }
    for other in &trees[1..] {
        let d = diff_trees(&trees[0], other, &|_, _| {});
        assert!(d.is_empty(), "{d:#?}");
    }
}

#[test]
fn matches_umoci_entry_by_entry() {
    if !is_root() || !have("umoci") {
        eprintln!("skipped: needs root and umoci (scripts/install-test-deps.sh)");
        return;
    }
    let t = TempDir::new("umoci");
    let img = t.join("img");
    let mut spec = ImageSpec::new(rich_layers([Comp::Gzip, Comp::Gzip, Comp::None], true));
    spec.config = serde_json::json!({
        "User": "svc", "Env": ["PATH=/usr/bin:/bin", "A=1"], "Entrypoint": ["/bin/tool"], "Cmd": ["--flag"],
        "WorkingDir": "/data", "Labels": {"l": "v"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/vol": {}},
        "StopSignal": "SIGINT",
    });
    oci_layout(&img, &spec, "latest");
    let ours = t.join("ours");
    unpack(
        &format!("oci:{}:latest", img.display()),
        &ours,
        &flat_opts(),
    )
    .unwrap();
    let theirs = t.join("theirs");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:latest", img.display())])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = tree(&ours.join("rootfs"));
    let b = tree(&theirs.join("rootfs"));
    // umoci leaves the wall-clock time on a directory in which it made an
    // implicit parent; brig-unpack restores the time the image gave it. Those
    // directories (and only those) are compared without mtime.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 600;
    let wall_clock: std::collections::HashSet<String> = b
        .iter()
        .filter(|(_, n)| n.kind == "dir" && n.mtime >= started)
        .map(|(k, _)| k.clone())
        .collect();
    let expected: std::collections::HashSet<String> = ["", "new", "new/deep"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        wall_clock.is_subset(&expected),
        "only /, new/ and new/deep/ get implicit children: {wall_clock:?}"
    );
    let d = diff_trees(&a, &b, &|k, n| {
        if wall_clock.contains(k) {
            n.mtime = 0;
        }
    });
    assert!(d.is_empty(), "differences from umoci:\n{}", d.join("\n"));

    let ours: serde_json::Value =
        serde_json::from_slice(&fs::read(ours.join("config.json")).unwrap()).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&fs::read(theirs.join("config.json")).unwrap()).unwrap();
    for ptr in [
        "/process/args",
        "/process/cwd",
        "/process/user/uid",
        "/process/user/gid",
        "/process/terminal",
        "/root/path",
    ] {
        assert_eq!(ours.pointer(ptr), theirs.pointer(ptr), "{ptr}");
    }
    let env = |v: &serde_json::Value| -> Vec<String> {
        let mut e: Vec<String> = v
            .pointer("/process/env")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        e.retain(|s| !s.starts_with("TERM="));
        e.sort();
        e
    };
    assert_eq!(env(&ours), env(&theirs));
    for (k, v) in theirs.pointer("/annotations").unwrap().as_object().unwrap() {
        assert_eq!(
            ours.pointer("/annotations").unwrap().get(k),
            Some(v),
            "annotation {k}"
        );
    }
    let vol = |v: &serde_json::Value| {
        v.pointer("/mounts")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/vol" && m["type"] == "tmpfs")
    };
    assert!(vol(&ours) && vol(&theirs));
}

#[test]
fn platform_selection_from_a_multi_platform_index() {
    let t = TempDir::new("platform");
    let img = t.join("img");
    let mk = |arch: &str, marker: &[u8]| {
        let mut l = Layer::new();
        l.file(
            "arch",
            marker,
            Own {
                uid: nix::unistd::geteuid().as_raw().into(),
                gid: nix::unistd::getegid().as_raw().into(),
                ..ROOT
            },
        );
        let mut s = ImageSpec::new(vec![(l.finish(), Comp::Gzip)]);
        s.arch = arch.into();
        write_image_blobs(&img, &s)
    };
    let host = mk(host_arch(), b"host");
    let other_arch = if host_arch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    };
    let other = mk(other_arch, b"other");
    let nested = serde_json::json!({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other.manifest.0, "size": other.manifest.1,
         "platform": {"os": "linux", "architecture": other_arch}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": host.manifest.0, "size": host.manifest.1,
         "platform": {"os": "linux", "architecture": host_arch()}},
    ]});
    let (d, n) = write_blob(&img, &serde_json::to_vec(&nested).unwrap());
    write_index(
        &img,
        &[
            serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": n,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}),
        ],
    );
    let opts = UnpackOptions {
        flat: true,
        progress: false,
        ..Default::default()
    };
    unpack(&format!("oci:{}:multi", img.display()), &t.join("a"), &opts).unwrap();
    assert_eq!(fs::read(t.join("a/rootfs/arch")).unwrap(), b"host");
    let picked = UnpackOptions {
        platform: Some(
            brig_unpack::platform::Platform::parse(&format!("linux/{other_arch}")).unwrap(),
        ),
        ..opts.clone()
    };
    unpack(
        &format!("oci:{}:multi", img.display()),
        &t.join("b"),
        &picked,
    )
    .unwrap();
    assert_eq!(fs::read(t.join("b/rootfs/arch")).unwrap(), b"other");
    let missing = UnpackOptions {
        platform: Some(brig_unpack::platform::Platform::parse("linux/mips64le").unwrap()),
        ..opts.clone()
    };
    let e = unpack(
        &format!("oci:{}:multi", img.display()),
        &t.join("c"),
        &missing,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no image for linux/mips64le"), "{e}");
    assert!(
        !t.join("c").exists(),
        "a failed unpack removes the bundle it created"
    );
    let e = unpack(&format!("oci:{}:nope", img.display()), &t.join("d"), &opts).unwrap_err();
    assert!(e.to_string().contains("available: multi"), "{e}");
}

#[test]
fn config_json_from_image_config() {
    let t = TempDir::new("config");
    let img = t.join("img");
    let me = Own {
        uid: nix::unistd::geteuid().as_raw().into(),
        gid: nix::unistd::getegid().as_raw().into(),
        ..ROOT
    };
    let mut l = Layer::new();
    l.dir("etc/", Own { mode: 0o755, ..me })
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nweb:x:33:44:web:/srv/web:/bin/false\n",
            me,
        )
        .file("etc/group", b"root:x:0:\nweb:x:44:\nlog:x:7:web\n", me);
    let mut spec = ImageSpec::new(vec![(l.finish(), Comp::None)]);
    spec.config = serde_json::json!({"User": "web", "Env": ["PATH=/x", "HOME=/ignored"], "Cmd": ["serve"], "Entrypoint": ["/app"]});
    oci_layout(&img, &spec, "latest");
    let mut opts = flat_opts();
    opts.spec.cmd = Some(vec!["other".into(), "args".into()]);
    opts.spec.terminal = false;
    unpack(&format!("oci:{}", img.display()), &t.join("b"), &opts).unwrap();
    let c: serde_json::Value =
        serde_json::from_slice(&fs::read(t.join("b/config.json")).unwrap()).unwrap();
    assert_eq!(
        c.pointer("/process/args").unwrap(),
        &serde_json::json!(["/app", "other", "args"])
    );
    assert_eq!(c.pointer("/process/user/uid").unwrap(), 33);
    assert_eq!(c.pointer("/process/user/gid").unwrap(), 44);
    assert_eq!(
        c.pointer("/process/user/additionalGids").unwrap(),
        &serde_json::json!([7])
    );
    assert_eq!(c.pointer("/process/terminal").unwrap(), false);
    let env = c.pointer("/process/env").unwrap().as_array().unwrap();
    assert!(env.contains(&serde_json::json!("HOME=/srv/web")));
    assert!(env.contains(&serde_json::json!("PATH=/x")));
    assert_eq!(
        c.pointer("/annotations/org.opencontainers.image.created")
            .unwrap(),
        "2024-05-06T07:08:09.123Z"
    );
}

#[test]
fn id_mapping_shifts_ownership() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = TempDir::new("idmap");
    let img = t.join("img");
    let mut l = Layer::new();
    l.dir("d/", DIR)
        .file("d/f", b"x", own(1000, 1000, 0o4755))
        .symlink("d/s", "f");
    oci_layout(
        &img,
        &ImageSpec::new(vec![(l.finish(), Comp::Gzip)]),
        "latest",
    );
    let mut opts = flat_opts();
    let m = brig_unpack::idmap::IdMap(vec![
        brig_unpack::idmap::IdRange::parse("0:100000:65536").unwrap()
    ]);
    opts.apply.uid_map = m.clone();
    opts.apply.gid_map = m.clone();
    opts.spec.uid_map = m.clone();
    opts.spec.gid_map = m;
    unpack(&format!("oci:{}", img.display()), &t.join("b"), &opts).unwrap();
    let f = fs::symlink_metadata(t.join("b/rootfs/d/f")).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777),
        (101000, 101000, 0o4755)
    );
    assert_eq!(
        fs::symlink_metadata(t.join("b/rootfs/d")).unwrap().uid(),
        100000
    );
    assert_eq!(
        fs::symlink_metadata(t.join("b/rootfs/d/s")).unwrap().uid(),
        100000
    );
    let c: serde_json::Value =
        serde_json::from_slice(&fs::read(t.join("b/config.json")).unwrap()).unwrap();
    assert_eq!(c.pointer("/linux/uidMappings/0/hostID").unwrap(), 100000);
    assert!(c
        .pointer("/linux/namespaces")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
}

#[test]
fn cli_flat_unpack() {
    let t = TempDir::new("cli");
    let img = t.join("img");
    let me = Own {
        uid: nix::unistd::geteuid().as_raw().into(),
        gid: nix::unistd::getegid().as_raw().into(),
        ..ROOT
    };
    let mut l = Layer::new();
    l.file("hello", b"world", me);
    oci_layout(
        &img,
        &ImageSpec::new(vec![(l.finish(), Comp::Zstd)]),
        "latest",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brig-unpack"))
        .args([
            "--flat",
            "--quiet",
            "--no-terminal",
            &format!("oci:{}", img.display()),
        ])
        .arg(t.join("b"))
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(t.join("b/rootfs/hello")).unwrap(), b"world");
    let c: serde_json::Value =
        serde_json::from_slice(&fs::read(t.join("b/config.json")).unwrap()).unwrap();
    assert_eq!(
        c.pointer("/process/args").unwrap(),
        &serde_json::json!(["echo", "hi"])
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brig-unpack"))
        .args(["--flat", "nonsense:x"])
        .arg(t.join("c"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown transport"));
}

#[test]
fn rootless_unpack_as_an_unprivileged_user() {
    if !is_root() || !have("setpriv") {
        eprintln!("skipped: needs root (to switch to nobody) and setpriv");
        return;
    }
    let t = TempDir::new("rootless");
    let img = t.join("img");
    let mut l = Layer::new();
    l.dir("bin/", DIR)
        .file("bin/suid", b"s", own(0, 0, 0o4755))
        .file("owned", b"o", own(1000, 1000, 0o600))
        .dir("dev/", DIR)
        .dev("dev/null", tar::EntryType::Char, 1, 3, own(0, 0, 0o666));
    oci_layout(
        &img,
        &ImageSpec::new(vec![(l.finish(), Comp::Gzip)]),
        "latest",
    );
    let out_dir = t.join("out");
    fs::create_dir(&out_dir).unwrap();
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).unwrap();
    for p in [t.path(), &img] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_brig-unpack"))
        .args([
            "--flat",
            "--rootless",
            "-q",
            &format!("oci:{}", img.display()),
        ])
        .arg(out_dir.join("b"))
        .env("HOME", &out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dev/null") && stderr.contains("skipped"),
        "{stderr}"
    );
    let rootfs = out_dir.join("b/rootfs");
    let m = fs::metadata(rootfs.join("bin/suid")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (65534, 0o4755));
    assert_eq!(fs::metadata(rootfs.join("owned")).unwrap().uid(), 65534);
    assert!(!rootfs.join("dev/null").exists());
    let c: serde_json::Value =
        serde_json::from_slice(&fs::read(out_dir.join("b/config.json")).unwrap()).unwrap();
    assert_eq!(c.pointer("/linux/uidMappings/0/hostID").unwrap(), 65534);
    assert!(c
        .pointer("/linux/namespaces")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
}
