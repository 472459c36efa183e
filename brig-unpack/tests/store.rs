//! The layer store and overlay bundles: sharing, merged view == flat view,
//! mount/umount/rm/gc, concurrent unpacks.

mod common;

use std::fs;
use std::path::Path;

use brig_unpack::bundle::{self, unpack, BundleState, UnpackOptions};
use brig_unpack::store::Store;
use common::*;

fn opts(store: &Path) -> UnpackOptions {
    UnpackOptions {
        flat: false,
        store: Some(store.to_path_buf()),
        progress: false,
        ..Default::default()
    }
}

fn simple(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("./", DIR);
    for (n, c) in files {
        l.file(n, c, ROOT);
    }
    l.finish()
}

fn mounted(p: &Path) -> bool {
    brig_unpack::overlay::is_mounted(p).unwrap()
}

#[test]
fn merged_view_equals_flat_unpack() {
    if !is_root() {
        eprintln!("skipped: needs root for overlayfs");
        return;
    }
    let t = TempDir::new("merged");
    let img = t.join("img");
    oci_layout(
        &img,
        &ImageSpec::new(rich_layers([Comp::Gzip, Comp::Zstd, Comp::None], false)),
        "latest",
    );
    let r = format!("oci:{}", img.display());
    let flat = t.join("flat");
    unpack(
        &r,
        &flat,
        &UnpackOptions {
            flat: true,
            progress: false,
            ..Default::default()
        },
    )
    .unwrap();
    let ov = t.join("ov");
    let rep = unpack(&r, &ov, &opts(&t.join("store"))).unwrap();
    assert_eq!((rep.layers, rep.cached_layers), (3, 0));
    assert!(mounted(&ov.join("rootfs")));
    let a = tree(&flat.join("rootfs"));
    let b = tree(&ov.join("rootfs"));
    // Link counts are the lower inode's in overlayfs: a hardlink whose partner
    // was replaced in a later layer still counts 2 there, 1 in a flat rootfs.
    let d = diff_trees(&a, &b, &|_, n| n.nlink = 0);
    assert!(d.is_empty(), "overlay vs flat:\n{}", d.join("\n"));
    // The store holds overlayfs whiteouts for the deleted paths.
    let st: BundleState = BundleState::load(&ov).unwrap();
    let top2 = Store::open(&t.join("store"))
        .unwrap()
        .layer_diff(&st.layers[1]);
    let wh = fs::symlink_metadata(top2.join("data/to-delete")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattrs_of(&top2.join("opq"))
            .get("trusted.overlay.opaque")
            .map(Vec::as_slice),
        Some(&b"y"[..])
    );
    // The config is generated from the merged view (the image's passwd is there).
    assert!(ov.join("config.json").is_file());
}

#[test]
fn shared_layers_mount_umount_rm_gc() {
    if !is_root() {
        eprintln!("skipped: needs root for overlayfs");
        return;
    }
    let t = TempDir::new("share");
    let store = t.join("store");
    let base = simple(&[("etc/os-release", b"base"), ("bin/sh", b"shell")]);
    let a_top = simple(&[("app", b"a")]);
    let b_top = simple(&[("app", b"b")]);
    let ia = t.join("ia");
    let ib = t.join("ib");
    oci_layout(
        &ia,
        &ImageSpec::new(vec![(base.clone(), Comp::Gzip), (a_top, Comp::Gzip)]),
        "latest",
    );
    // The same base compressed differently still has the same diff ID, so it is shared.
    oci_layout(
        &ib,
        &ImageSpec::new(vec![(base, Comp::Zstd), (b_top, Comp::None)]),
        "latest",
    );

    let b1 = t.join("b1");
    let b2 = t.join("b2");
    let b3 = t.join("b3");
    assert_eq!(
        unpack(&format!("oci:{}", ia.display()), &b1, &opts(&store))
            .unwrap()
            .cached_layers,
        0
    );
    assert_eq!(
        unpack(&format!("oci:{}", ib.display()), &b2, &opts(&store))
            .unwrap()
            .cached_layers,
        1
    );
    assert_eq!(
        unpack(&format!("oci:{}", ia.display()), &b3, &opts(&store))
            .unwrap()
            .cached_layers,
        2
    );
    assert_eq!(fs::read(b1.join("rootfs/app")).unwrap(), b"a");
    assert_eq!(fs::read(b2.join("rootfs/app")).unwrap(), b"b");
    assert_eq!(fs::read(b2.join("rootfs/etc/os-release")).unwrap(), b"base");
    let layers = |alg: &str| {
        fs::read_dir(store.join("layers").join(alg))
            .unwrap()
            .count()
    };
    assert_eq!(layers("sha256"), 3);

    // Writes go to the bundle's upper dir, never to the shared layer.
    fs::write(b1.join("rootfs/etc/os-release"), b"changed").unwrap();
    assert_eq!(fs::read(b2.join("rootfs/etc/os-release")).unwrap(), b"base");
    assert_eq!(
        fs::read(b1.join("overlay/upper/etc/os-release")).unwrap(),
        b"changed"
    );

    bundle::umount(&b1).unwrap();
    assert!(!mounted(&b1.join("rootfs")));
    assert!(bundle::umount(&b1).is_err());
    bundle::mount(&b1).unwrap();
    assert!(bundle::mount(&b1).is_err());
    assert_eq!(
        fs::read(b1.join("rootfs/etc/os-release")).unwrap(),
        b"changed"
    );

    // gc keeps everything while all three bundles exist.
    let s = Store::open(&store).unwrap();
    assert_eq!(s.gc().unwrap().layers, 0);
    bundle::remove(&b1).unwrap();
    bundle::remove(&b3).unwrap();
    assert!(!b1.exists());
    let r = s.gc().unwrap();
    assert_eq!(r.layers, 1, "only image A's top layer is unused now");
    assert_eq!(fs::read(b2.join("rootfs/bin/sh")).unwrap(), b"shell");
    // A bundle deleted behind our back is noticed by gc.
    nix::mount::umount2(&b2.join("rootfs"), nix::mount::MntFlags::empty()).unwrap();
    fs::remove_dir_all(&b2).unwrap();
    let r = s.gc().unwrap();
    assert_eq!((r.layers, r.bundles), (2, 1));
    assert_eq!(layers("sha256"), 0);
}

#[test]
fn concurrent_unpacks_share_one_copy() {
    if !is_root() {
        eprintln!("skipped: needs root for overlayfs");
        return;
    }
    let t = TempDir::new("concurrent");
    let store = t.join("store");
    let img = t.join("img");
    let layers: Vec<(Vec<u8>, Comp)> = (0..4)
        .map(|i| {
            (
                simple(&[(&format!("f{i}"), &vec![i as u8; 200_000][..])]),
                Comp::Gzip,
            )
        })
        .collect();
    oci_layout(&img, &ImageSpec::new(layers), "latest");
    // Debris of a crashed unpack: never mistaken for a layer, removed by gc.
    fs::create_dir_all(store.join("tmp/crashed-layer/diff")).unwrap();
    let r = format!("oci:{}", img.display());
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (r, t, store) = (&r, &t, &store);
                s.spawn(move || unpack(r, &t.join(&format!("b{i}")), &opts(store)).map(|_| ()))
            })
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    for i in 0..3 {
        for j in 0..4u8 {
            assert_eq!(
                fs::read(t.join(&format!("b{i}/rootfs/f{j}")))
                    .unwrap()
                    .len(),
                200_000
            );
        }
    }
    assert_eq!(
        fs::read_dir(store.join("layers/sha256")).unwrap().count(),
        4
    );
    let left: Vec<_> = fs::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the crash debris is left: {left:?}");
    for i in 0..3 {
        bundle::remove(&t.join(&format!("b{i}"))).unwrap();
    }
    let r = Store::open(&store).unwrap().gc().unwrap();
    assert_eq!((r.layers, r.temps), (4, 1));
}

#[test]
fn cli_overlay_lifecycle() {
    if !is_root() {
        eprintln!("skipped: needs root for overlayfs");
        return;
    }
    let t = TempDir::new("cli-store");
    let img = t.join("img");
    oci_layout(
        &img,
        &ImageSpec::new(vec![(simple(&[("hello", b"world")]), Comp::Gzip)]),
        "latest",
    );
    let bin = env!("CARGO_BIN_EXE_brig-unpack");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let store = t.join("store").display().to_string();
    let b = t.join("b").display().to_string();
    run(&[
        "-q",
        "--store",
        &store,
        &format!("oci:{}", img.display()),
        &b,
    ]);
    assert_eq!(fs::read(t.join("b/rootfs/hello")).unwrap(), b"world");
    run(&["umount", &b]);
    assert!(!t.join("b/rootfs/hello").exists());
    run(&["mount", &b]);
    assert!(t.join("b/rootfs/hello").exists());
    run(&["rm", &b]);
    assert!(!t.join("b").exists());
    let out = run(&["gc", "--store", &store]);
    assert!(out.contains("removed 1 layers"), "{out}");
}

#[test]
fn id_mapped_layers_are_stored_apart() {
    if !is_root() {
        eprintln!("skipped: needs root for overlayfs");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let t = TempDir::new("store-idmap");
    let store = t.join("store");
    let img = t.join("img");
    oci_layout(
        &img,
        &ImageSpec::new(vec![(simple(&[("f", b"x")]), Comp::Gzip)]),
        "latest",
    );
    let r = format!("oci:{}", img.display());
    unpack(&r, &t.join("plain"), &opts(&store)).unwrap();
    let mut o = opts(&store);
    let m = brig_unpack::idmap::IdMap(vec![
        brig_unpack::idmap::IdRange::parse("0:200000:65536").unwrap()
    ]);
    o.apply.uid_map = m.clone();
    o.apply.gid_map = m;
    let rep = unpack(&r, &t.join("mapped"), &o).unwrap();
    assert_eq!(
        rep.cached_layers, 0,
        "a shifted copy is not the unshifted one"
    );
    assert_eq!(fs::metadata(t.join("plain/rootfs/f")).unwrap().uid(), 0);
    assert_eq!(
        fs::metadata(t.join("mapped/rootfs/f")).unwrap().uid(),
        200000
    );
    assert_eq!(
        fs::read_dir(store.join("layers/sha256")).unwrap().count(),
        2
    );
    bundle::umount(&t.join("mapped")).unwrap();
    bundle::mount(&t.join("mapped")).unwrap();
    assert_eq!(
        fs::metadata(t.join("mapped/rootfs/f")).unwrap().uid(),
        200000
    );
    let s = Store::open(&store).unwrap();
    assert_eq!(s.gc().unwrap().layers, 0);
    bundle::remove(&t.join("mapped")).unwrap();
    assert_eq!(s.gc().unwrap().layers, 1);
    assert_eq!(fs::read(t.join("plain/rootfs/f")).unwrap(), b"x");
}
