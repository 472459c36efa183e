//! End to end: brig-unpack an image, then `brig run` it, for a flat and an
//! overlay bundle. Skipped (with a message) when the brig binary, root or a
//! static busybox is missing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use brig_unpack::bundle::{self, unpack, UnpackOptions};
use common::*;

fn brig_binary() -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("BRIG_BIN") {
        c.push(p.into());
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    c.push(ws.join("target/debug/brig"));
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        c.push(PathBuf::from(t).join("debug/brig"));
    }
    c.push(ws.join("target-unpack/debug/brig"));
    c.into_iter().find(|p| p.is_file())
}

fn static_busybox() -> Option<Vec<u8>> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let Ok(b) = fs::read(p) else { continue };
        // A dynamically linked busybox would need the host's libc inside the image.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("file -L {p} 2>/dev/null || ldd {p} 2>&1"))
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout);
        if s.contains("statically linked") || s.contains("not a dynamic executable") {
            return Some(b);
        }
    }
    None
}

fn image(dir: &Path, busybox: &[u8]) {
    let mut l = Layer::new();
    l.dir("./", DIR);
    for d in ["bin/", "etc/", "proc/", "dev/", "sys/", "tmp/", "root/"] {
        l.dir(d, DIR);
    }
    l.file("bin/busybox", busybox, own(0, 0, 0o755))
        .symlink("bin/sh", "busybox")
        .symlink("bin/cat", "busybox")
        .symlink("bin/id", "busybox")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", ROOT)
        .file("etc/group", b"root:x:0:\n", ROOT);
    let mut top = Layer::new();
    top.file("hello", b"world\n", ROOT);
    let mut spec = ImageSpec::new(vec![(l.finish(), Comp::Gzip), (top.finish(), Comp::Zstd)]);
    spec.config = serde_json::json!({
        "Env": ["PATH=/bin", "FOO=from-image"],
        "Cmd": ["/bin/sh", "-c", "cat /hello; echo $FOO $HOME; id -u"],
    });
    oci_layout(dir, &spec, "latest");
}

fn run(brig: &Path, state: &Path, bundle: &Path, id: &str) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(brig)
        .arg("--root")
        .arg(state)
        .args(["run", "-b"])
        .arg(bundle)
        .arg(id)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "brig run {id} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn unpack_then_brig_run_flat_and_overlay() {
    let Some(brig) = brig_binary() else {
        eprintln!("skipped: no brig binary (cargo build, or set BRIG_BIN)");
        return;
    };
    if !is_root() {
        eprintln!("skipped: brig run needs root here");
        return;
    }
    let Some(busybox) = static_busybox() else {
        eprintln!(
            "skipped: no static busybox (scripts/install-test-deps.sh installs busybox-static)"
        );
        return;
    };
    let t = TempDir::new("e2e");
    let img = t.join("img");
    image(&img, &busybox);
    let state = t.join("state");
    for (flat, name) in [(true, "flat"), (false, "overlay")] {
        let b = t.join(name);
        let mut o = UnpackOptions {
            flat,
            progress: false,
            store: Some(t.join("store")),
            ..Default::default()
        };
        o.spec.terminal = false;
        unpack(&format!("oci:{}", img.display()), &b, &o).unwrap();
        let out = run(
            &brig,
            &state,
            &b,
            &format!("brig-unpack-e2e-{name}-{}", std::process::id()),
        );
        assert_eq!(out, "world\nfrom-image /root\n0\n", "{name}");
        if !flat {
            bundle::remove(&b).unwrap();
        }
    }
}
