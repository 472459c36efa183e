//! The hostile-image table: every case must fail with a clear error (or, for
//! names that are merely absolute, stay inside the rootfs) and must leave the
//! directory next to the bundle untouched.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use brig_unpack::bundle::{unpack, UnpackOptions};
use common::*;
use serde_json::{json, Value};

fn me() -> Own {
    Own {
        uid: nix::unistd::geteuid().as_raw().into(),
        gid: nix::unistd::getegid().as_raw().into(),
        ..ROOT
    }
}

/// Rewrites the manifest of a single-image layout and re-points index.json at it.
fn rewrite_manifest(dir: &Path, w: &Written, f: &dyn Fn(&mut Value)) {
    let p = dir
        .join("blobs/sha256")
        .join(w.manifest.0.trim_start_matches("sha256:"));
    let mut m: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
    f(&mut m);
    let (d, n) = write_blob(dir, &serde_json::to_vec(&m).unwrap());
    rewrite_index(dir, &|i| {
        i["manifests"][0]["digest"] = json!(d);
        i["manifests"][0]["size"] = json!(n);
    });
}

fn rewrite_index(dir: &Path, f: &dyn Fn(&mut Value)) {
    let mut i: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    f(&mut i);
    fs::write(dir.join("index.json"), serde_json::to_vec(&i).unwrap()).unwrap();
}

fn rewrite_config(dir: &Path, w: &Written, f: &dyn Fn(&mut Value)) {
    let p = dir
        .join("blobs/sha256")
        .join(w.config.0.trim_start_matches("sha256:"));
    let mut c: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
    f(&mut c);
    let (d, n) = write_blob(dir, &serde_json::to_vec(&c).unwrap());
    rewrite_manifest(dir, w, &|m| {
        m["config"]["digest"] = json!(d);
        m["config"]["size"] = json!(n);
    });
}

fn layer_path(dir: &Path, w: &Written, i: usize) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(w.layers[i].0.trim_start_matches("sha256:"))
}

type Tamper = Box<dyn Fn(&Path, &Written)>;

struct Case {
    name: &'static str,
    layers: Vec<(Vec<u8>, Comp)>,
    tamper: Option<Tamper>,
    max_size: Option<u64>,
    /// Substring of the expected error; None = must succeed.
    error: Option<&'static str>,
    /// In the layer store each layer is extracted on its own, so a symlink from a
    /// lower layer is not there to follow: the write lands in the layer's own
    /// directory (still inside), and success is just as safe as the error.
    store_may_succeed: bool,
}

fn layer(f: impl FnOnce(&mut Layer)) -> Vec<u8> {
    let mut l = Layer::new();
    f(&mut l);
    l.finish()
}

fn cases(outside: &Path) -> Vec<Case> {
    let out = outside.display().to_string();
    let out2 = out.clone();
    let out3 = out.clone();
    let out4 = out.clone();
    let out5 = out.clone();
    let plain = || {
        layer(|l| {
            l.file("ok", b"ok", me());
        })
    };
    vec![
        Case {
            name: "dotdot path",
            layers: vec![(
                layer(|l| {
                    l.raw_file(b"../../../../../../outside/evil", b"x");
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("climbs out of the rootfs"),
            store_may_succeed: false,
        },
        Case {
            name: "dotdot in the middle",
            layers: vec![(
                layer(|l| {
                    l.raw_file(b"a/../../outside/evil", b"x");
                }),
                Comp::Gzip,
            )],
            tamper: None,
            max_size: None,
            error: Some("climbs out of the rootfs"),
            store_may_succeed: false,
        },
        Case {
            name: "absolute name stays inside",
            layers: vec![(
                layer(move |l| {
                    l.raw_file(format!("{out}/evil").as_bytes(), b"x");
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: None,
            store_may_succeed: false,
        },
        Case {
            name: "symlink in one layer, write through it in the next",
            layers: vec![
                (
                    layer(move |l| {
                        l.symlink("esc", &out2);
                    }),
                    Comp::None,
                ),
                (
                    layer(|l| {
                        l.file("esc/evil", b"x", me());
                    }),
                    Comp::None,
                ),
            ],
            tamper: None,
            max_size: None,
            error: Some("No such file"),
            store_may_succeed: true,
        },
        Case {
            name: "relative symlink climbing out, then write",
            layers: vec![
                (
                    layer(|l| {
                        l.symlink("esc", "../../../../../../../../outside");
                    }),
                    Comp::None,
                ),
                (
                    layer(|l| {
                        l.file("esc/evil", b"x", me());
                    }),
                    Comp::Zstd,
                ),
            ],
            tamper: None,
            max_size: None,
            error: Some("No such file"),
            store_may_succeed: true,
        },
        Case {
            name: "symlink and write in the same layer",
            layers: vec![(
                layer(move |l| {
                    l.symlink("esc", &out3);
                    l.file("esc/evil", b"x", me());
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("No such file"),
            store_may_succeed: false,
        },
        Case {
            name: "symlink to a host file, then a file entry replaces it",
            layers: vec![
                (
                    layer(move |l| {
                        l.symlink("f", &format!("{out4}/secret"));
                    }),
                    Comp::None,
                ),
                (
                    layer(|l| {
                        l.file("f", b"replaced", me());
                    }),
                    Comp::None,
                ),
            ],
            tamper: None,
            max_size: None,
            error: None,
            store_may_succeed: false,
        },
        Case {
            name: "hardlink climbing out",
            layers: vec![(
                layer(|l| {
                    l.hardlink("hl", "../../../../../../outside/secret");
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("climbs out of the rootfs"),
            store_may_succeed: false,
        },
        Case {
            name: "hardlink to an absolute host path",
            layers: vec![(
                layer(move |l| {
                    l.hardlink("hl", &format!("{out5}/secret"));
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("hardlink target"),
            store_may_succeed: false,
        },
        Case {
            name: "hardlink through a symlink to /",
            layers: vec![(
                layer(|l| {
                    l.symlink("s", "/");
                    l.hardlink("hl", "s/../../../outside/secret");
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("climbs out of the rootfs"),
            store_may_succeed: false,
        },
        Case {
            name: "malformed whiteout",
            layers: vec![(
                layer(|l| {
                    l.raw_file(b"dir/.wh..", b"");
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("malformed whiteout"),
            store_may_succeed: false,
        },
        Case {
            name: "entry under a regular file",
            layers: vec![(
                layer(|l| {
                    l.file("f", b"x", me());
                    l.file("f/x", b"y", me());
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("not a directory"),
            store_may_succeed: false,
        },
        Case {
            name: "overlayfs control xattr",
            layers: vec![(
                layer(|l| {
                    l.dir_x("d/", me(), &[("trusted.overlay.redirect", b"/etc")]);
                }),
                Comp::None,
            )],
            tamper: None,
            max_size: None,
            error: Some("refusing overlayfs control xattr"),
            store_may_succeed: false,
        },
        Case {
            name: "layer digest mismatch",
            layers: vec![(plain(), Comp::Gzip)],
            tamper: Some(Box::new(|d, w| {
                let p = layer_path(d, w, 0);
                let mut b = fs::read(&p).unwrap();
                let n = b.len();
                b[n - 9] ^= 0xff;
                fs::write(&p, b).unwrap();
            })),
            max_size: None,
            error: Some("sha256:"),
            store_may_succeed: false,
        },
        Case {
            name: "truncated layer blob",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                let p = layer_path(d, w, 0);
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..b.len() - 700]).unwrap();
            })),
            max_size: None,
            error: Some("truncated"),
            store_may_succeed: false,
        },
        Case {
            name: "blob longer than its descriptor",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                rewrite_manifest(d, w, &|m| {
                    let n = m["layers"][0]["size"].as_u64().unwrap();
                    m["layers"][0]["size"] = json!(n - 512);
                })
            })),
            max_size: None,
            error: Some("longer than its descriptor"),
            store_may_succeed: false,
        },
        Case {
            name: "diff ID mismatch",
            layers: vec![(plain(), Comp::Zstd)],
            tamper: Some(Box::new(|d, w| {
                rewrite_config(d, w, &|c| {
                    c["rootfs"]["diff_ids"][0] = json!(format!("sha256:{}", "0".repeat(64)));
                })
            })),
            max_size: None,
            error: Some("digest mismatch"),
            store_may_succeed: false,
        },
        Case {
            name: "manifest digest mismatch",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                let p = d
                    .join("blobs/sha256")
                    .join(w.manifest.0.trim_start_matches("sha256:"));
                let s = fs::read_to_string(&p)
                    .unwrap()
                    .replace("schemaVersion\":2", "schemaVersion\":3");
                fs::write(&p, s).unwrap();
            })),
            max_size: None,
            error: Some("digest mismatch"),
            store_may_succeed: false,
        },
        Case {
            name: "manifest claims to be an index",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                rewrite_manifest(d, w, &|m| {
                    m["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
                })
            })),
            max_size: None,
            error: Some("media type mismatch"),
            store_may_succeed: false,
        },
        Case {
            name: "manifest that is also an index",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                rewrite_manifest(d, w, &|m| {
                    m.as_object_mut().unwrap().remove("mediaType");
                    m["manifests"] = json!([]);
                })
            })),
            max_size: None,
            error: Some("ambiguous"),
            store_may_succeed: false,
        },
        Case {
            name: "unknown layer media type",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                rewrite_manifest(d, w, &|m| {
                    m["layers"][0]["mediaType"] = json!("application/x-evil");
                })
            })),
            max_size: None,
            error: Some("not a supported layer media type"),
            store_may_succeed: false,
        },
        Case {
            name: "digest used as a path",
            layers: vec![(plain(), Comp::None)],
            tamper: Some(Box::new(|d, w| {
                rewrite_manifest(d, w, &|m| {
                    m["layers"][0]["digest"] = json!("sha256:../../../outside/secret");
                })
            })),
            max_size: None,
            error: Some("invalid digest"),
            store_may_succeed: false,
        },
        Case {
            name: "gzip bomb",
            layers: vec![(
                layer(|l| {
                    l.file("zeros", &vec![0u8; 24 << 20], me());
                }),
                Comp::Gzip,
            )],
            tamper: None,
            max_size: Some(4 << 20),
            error: Some("exceeds the limit of 4194304 bytes"),
            store_may_succeed: false,
        },
    ]
}

fn check_outside(outside: &Path, case: &str) {
    let names: Vec<String> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["secret".to_string()],
        "{case}: something appeared outside the bundle"
    );
    let m = fs::metadata(outside.join("secret")).unwrap();
    assert_eq!(m.nlink(), 1, "{case}: host file was hardlinked");
    assert_eq!(
        fs::read(outside.join("secret")).unwrap(),
        b"host",
        "{case}: host file changed"
    );
}

fn run_table(flat: bool) {
    let t = TempDir::new(if flat {
        "hostile-flat"
    } else {
        "hostile-store"
    });
    let outside = t.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"host").unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases(&outside).into_iter().enumerate() {
        let img = t.join(&format!("img{i}"));
        let w = oci_layout(&img, &ImageSpec::new(case.layers), "latest");
        if let Some(f) = &case.tamper {
            f(&img, &w);
        }
        let bundle = t.join(&format!("bundle{i}"));
        let mut opts = UnpackOptions {
            flat,
            progress: false,
            store: Some(t.join("store")),
            ..Default::default()
        };
        if let Some(m) = case.max_size {
            opts.limits.max_layer_size = m;
        }
        let r = unpack(&format!("oci:{}", img.display()), &bundle, &opts);
        match (&r, case.error) {
            (Ok(_), None) => {}
            (Ok(_), Some(_)) if !flat && case.store_may_succeed => {}
            (Err(e), Some(want)) if e.to_string().contains(want) => {
                assert!(
                    !bundle.exists(),
                    "{}: failed unpack left its bundle behind",
                    case.name
                );
            }
            (r, want) => failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name,
                want,
                r.as_ref().map(|_| ()).map_err(|e| e.to_string())
            )),
        }
        check_outside(&outside, case.name);
        if r.is_ok() {
            let _ = brig_unpack::bundle::remove(&bundle);
        }
    }
    // The absolute name landed inside the rootfs and the replaced symlink is a plain file.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if !flat {
        let left: Vec<_> = fs::read_dir(t.join("store/tmp")).unwrap().collect();
        assert!(
            left.is_empty(),
            "failed extractions left temp dirs in the store"
        );
    }
}

#[test]
fn hostile_images_flat() {
    run_table(true);
}

#[test]
fn hostile_images_layer_store() {
    if !is_root() {
        eprintln!("skipped: the layer store mounts overlayfs and needs root");
        return;
    }
    run_table(false);
}

#[test]
fn absolute_names_and_replaced_symlinks_stay_inside() {
    let t = TempDir::new("inside");
    let outside = t.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"host").unwrap();
    let out = outside.display().to_string();
    let img = t.join("img");
    let l1 = layer(|l| {
        l.symlink("f", &format!("{out}/secret"));
    });
    let l2 = layer(|l| {
        l.file("f", b"replaced", me());
        l.raw_file(format!("{out}/evil").as_bytes(), b"x");
    });
    oci_layout(
        &img,
        &ImageSpec::new(vec![(l1, Comp::None), (l2, Comp::None)]),
        "latest",
    );
    let b = t.join("b");
    unpack(
        &format!("oci:{}", img.display()),
        &b,
        &UnpackOptions {
            flat: true,
            progress: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fs::read(b.join("rootfs/f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(b.join("rootfs/f"))
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(
        fs::read(
            b.join("rootfs")
                .join(out.trim_start_matches('/'))
                .join("evil")
        )
        .unwrap(),
        b"x"
    );
    check_outside(&outside, "inside");
}
