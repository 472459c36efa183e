//! Interoperability with images written by real tools (skopeo, umoci), built
//! here from scratch; skipped when the tools are not installed
//! (scripts/install-test-deps.sh installs them).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

use brig_unpack::bundle::{unpack, UnpackOptions};
use common::*;

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn flat() -> UnpackOptions {
    UnpackOptions {
        flat: true,
        progress: false,
        ..Default::default()
    }
}

#[test]
fn skopeo_conversions_unpack_identically() {
    if !is_root() || !have("skopeo") {
        eprintln!("skipped: needs root and skopeo");
        return;
    }
    let t = TempDir::new("skopeo");
    let src = t.join("src");
    oci_layout(
        &src,
        &ImageSpec::new(rich_layers([Comp::Gzip, Comp::Gzip, Comp::None], false)),
        "latest",
    );
    let from = format!("oci:{}:latest", src.display());
    sh(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd",
            "--dest-compress",
            &from,
        ])
        .arg(format!("oci:{}:latest", t.join("zstd").display())));
    sh(Command::new("skopeo")
        .args(["copy", "-q", &from])
        .arg(format!(
            "docker-archive:{}:example/rich:1",
            t.join("d.tar").display()
        )));
    sh(Command::new("skopeo")
        .args(["copy", "-q", &from])
        .arg(format!("oci-archive:{}:latest", t.join("o.tar").display())));
    unpack(&from, &t.join("ref"), &flat()).unwrap();
    let want = tree(&t.join("ref/rootfs"));
    for (i, r) in [
        format!("oci:{}:latest", t.join("zstd").display()),
        format!(
            "docker-archive:{}:example/rich:1",
            t.join("d.tar").display()
        ),
        format!("oci-archive:{}:latest", t.join("o.tar").display()),
    ]
    .iter()
    .enumerate()
    {
        let b = t.join(&format!("b{i}"));
        unpack(r, &b, &flat()).unwrap_or_else(|e| panic!("{r}: {e}"));
        let d = diff_trees(&want, &tree(&b.join("rootfs")), &|_, _| {});
        assert!(d.is_empty(), "{r}:\n{}", d.join("\n"));
    }
}

#[test]
fn umoci_built_image_matches_umoci_unpack() {
    if !is_root() || !have("umoci") {
        eprintln!("skipped: needs root and umoci");
        return;
    }
    let t = TempDir::new("umoci-built");
    let img = t.join("img");
    let content = t.join("content");
    fs::create_dir_all(content.join("usr/bin")).unwrap();
    fs::write(content.join("usr/bin/app"), b"#!/bin/sh\necho app\n").unwrap();
    fs::hard_link(
        content.join("usr/bin/app"),
        content.join("usr/bin/app-link"),
    )
    .unwrap();
    symlink("app", content.join("usr/bin/app-sym")).unwrap();
    fs::write(content.join("usr/big"), vec![7u8; 3 << 20]).unwrap();
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&img));
    sh(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:latest", img.display())));
    sh(Command::new("umoci")
        .args(["insert", "--image"])
        .arg(format!("{}:latest", img.display()))
        .arg(content.join("usr"))
        .arg("/usr"));
    sh(Command::new("umoci")
        .args(["insert", "--whiteout", "--image"])
        .arg(format!("{}:latest", img.display()))
        .arg("/usr/big"));
    sh(Command::new("umoci")
        .args(["config", "--config.cmd", "/usr/bin/app", "--image"])
        .arg(format!("{}:latest", img.display())));
    let theirs = t.join("theirs");
    sh(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", img.display()))
        .arg(&theirs));
    let ours = t.join("ours");
    unpack(&format!("oci:{}:latest", img.display()), &ours, &flat()).unwrap();
    assert!(!ours.join("rootfs/usr/big").exists());
    let d = diff_trees(
        &tree(&ours.join("rootfs")),
        &tree(&theirs.join("rootfs")),
        &|_, _| {},
    );
    assert!(d.is_empty(), "{}", d.join("\n"));
}
