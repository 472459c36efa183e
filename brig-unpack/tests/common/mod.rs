//! Test helpers: build layer tars, OCI layouts, OCI archives and docker archives
//! in process, and compare directory trees entry by entry.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

pub fn sha256_hex(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temp dir removed on drop (unmounting a bundle rootfs first if needed).
pub struct TempDir(pub PathBuf);

static N: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "brig-unpack-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Ok(m) = fs::read_to_string("/proc/self/mountinfo") {
            let mut mounts: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|mp| Path::new(mp).starts_with(&self.0))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mp in mounts {
                let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------- layer tars ----------

#[derive(Clone, Copy)]
pub struct Own {
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    pub mtime: u64,
}

pub const ROOT: Own = Own {
    uid: 0,
    gid: 0,
    mode: 0o644,
    mtime: 1_600_000_000,
};
pub const DIR: Own = Own {
    uid: 0,
    gid: 0,
    mode: 0o755,
    mtime: 1_600_000_000,
};

/// Builds a layer tar entry by entry; names are written raw (no sanitising), so
/// hostile names can be produced too.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    loop {
        let total = body_len + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl Layer {
    pub fn new() -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        Layer { b }
    }

    fn header(name: &[u8], kind: tar::EntryType, size: u64, o: Own) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_uid(o.uid);
        h.set_gid(o.gid);
        h.set_mode(o.mode);
        h.set_mtime(o.mtime);
        let n = &mut h.as_old_mut().name;
        assert!(name.len() < n.len(), "test names must fit the old header");
        n.fill(0);
        n[..name.len()].copy_from_slice(name);
        h
    }

    fn put(&mut self, mut h: tar::Header, data: &[u8], xattrs: &[(&str, &[u8])]) -> &mut Self {
        if !xattrs.is_empty() {
            let mut body = Vec::new();
            for (k, v) in xattrs {
                body.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
            }
            let mut ph = Self::header(
                b"PaxHeaders/x",
                tar::EntryType::XHeader,
                body.len() as u64,
                ROOT,
            );
            ph.set_cksum();
            self.b.append(&ph, &body[..]).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], o: Own) -> &mut Self {
        self.file_x(name, data, o, &[])
    }
    pub fn file_x(
        &mut self,
        name: &str,
        data: &[u8],
        o: Own,
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            o,
        );
        self.put(h, data, xattrs)
    }
    pub fn dir(&mut self, name: &str, o: Own) -> &mut Self {
        self.dir_x(name, o, &[])
    }
    pub fn dir_x(&mut self, name: &str, o: Own, xattrs: &[(&str, &[u8])]) -> &mut Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, 0, o);
        self.put(h, &[], xattrs)
    }
    pub fn link(&mut self, kind: tar::EntryType, name: &str, target: &str, o: Own) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), kind, 0, o);
        let l = &mut h.as_old_mut().linkname;
        l.fill(0);
        l[..target.len()].copy_from_slice(target.as_bytes());
        self.put(h, &[], &[])
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(
            tar::EntryType::Symlink,
            name,
            target,
            Own {
                mode: 0o777,
                ..ROOT
            },
        )
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target, ROOT)
    }
    pub fn dev(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
        o: Own,
    ) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), kind, 0, o);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.put(h, &[], &[])
    }
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path
            .rsplit_once('/')
            .map(|(d, n)| (format!("{d}/"), n))
            .unwrap_or((String::new(), path));
        self.file(&format!("{dir}.wh.{name}"), b"", ROOT)
    }
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", ROOT)
    }
    pub fn raw_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, ROOT);
        self.put(h, data, &[])
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], c: Comp) -> Vec<u8> {
    match c {
        Comp::None => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => {
            ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

pub fn layer_media(c: Comp) -> &'static str {
    match c {
        Comp::None => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

// ---------- images ----------

pub struct ImageSpec {
    pub layers: Vec<(Vec<u8>, Comp)>,
    pub config: serde_json::Value,
    pub arch: String,
}

impl ImageSpec {
    pub fn new(layers: Vec<(Vec<u8>, Comp)>) -> ImageSpec {
        ImageSpec {
            layers,
            config: serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]}),
            arch: host_arch().into(),
        }
    }
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What a written image consists of, for tests that tamper with it.
pub struct Written {
    pub manifest: (String, usize),
    pub config: (String, usize),
    pub layers: Vec<(String, usize)>,
    pub diff_ids: Vec<String>,
}

pub fn write_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let hex = sha256_hex(data);
    let p = dir.join("blobs/sha256");
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join(&hex), data).unwrap();
    (format!("sha256:{hex}"), data.len())
}

pub fn config_json(spec: &ImageSpec, diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "created": "2024-05-06T07:08:09.123Z",
        "author": "brig tests",
        "architecture": spec.arch,
        "os": "linux",
        "config": spec.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Writes the blobs of one image (layers, config, manifest) into an OCI layout.
pub fn write_image_blobs(dir: &Path, spec: &ImageSpec) -> Written {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (tar, c) in &spec.layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let blob = compress(tar, *c);
        let (d, n) = write_blob(dir, &blob);
        descs.push(serde_json::json!({"mediaType": layer_media(*c), "digest": d, "size": n}));
        layers.push((d, n));
    }
    let config = write_blob(dir, &config_json(spec, &diff_ids));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": descs,
    });
    let manifest = write_blob(dir, &serde_json::to_vec(&manifest).unwrap());
    Written {
        manifest,
        config,
        layers,
        diff_ids,
    }
}

pub fn write_index(dir: &Path, manifests: &[serde_json::Value]) {
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An OCI layout at `dir` holding one image tagged `tag`.
pub fn oci_layout(dir: &Path, spec: &ImageSpec, tag: &str) -> Written {
    let w = write_image_blobs(dir, spec);
    write_index(
        dir,
        &[serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": w.manifest.0, "size": w.manifest.1,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })],
    );
    w
}

/// Tars a directory tree (for oci-archive) with members named relative to it.
pub fn tar_dir(dir: &Path, out: &Path) {
    let f = fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A `docker save`-shaped tarball: manifest.json, HEX.json config, ID/layer.tar.
pub fn docker_archive(out: &Path, spec: &ImageSpec, tag: &str) {
    let f = fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    let mut diff_ids = Vec::new();
    let mut layer_paths = Vec::new();
    let add = |b: &mut tar::Builder<fs::File>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    for (i, (tar, c)) in spec.layers.iter().enumerate() {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let name = format!("{:064x}/layer.tar", i + 1);
        add(&mut b, &name, &compress(tar, *c));
        layer_paths.push(name);
    }
    let cfg = config_json(spec, &diff_ids);
    let cfg_name = format!("{}.json", sha256_hex(&cfg));
    add(&mut b, &cfg_name, &cfg);
    let manifest =
        serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": layer_paths}]);
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.finish().unwrap();
}

// ---------- tree comparison ----------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: String,
    pub link: String,
    pub rdev: u64,
    pub mtime: i64,
    pub nlink: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

pub fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: c is NUL-terminated and names is a writable buffer of its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated; v is a writable buffer of its length.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if m >= 0 {
            v.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), v);
        }
    }
    out
}

/// Every entry under `root` (relative path → node); the root itself is "".
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, Node>) {
    let m = fs::symlink_metadata(p).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    };
    let node = Node {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: if ft.is_file() { m.size() } else { 0 },
        content: if ft.is_file() {
            sha256_hex(&fs::read(p).unwrap())
        } else {
            String::new()
        },
        link: if ft.is_symlink() {
            fs::read_link(p).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        },
        rdev: if ft.is_char_device() || ft.is_block_device() {
            m.rdev()
        } else {
            0
        },
        mtime: m.mtime(),
        nlink: if ft.is_dir() { 0 } else { m.nlink() },
        xattrs: xattrs_of(p),
    };
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    out.insert(rel, node);
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for c in names {
            walk(root, &c, out);
        }
    }
}

/// Differences between two trees, as readable lines (empty when equal).
pub fn diff_trees(
    a: &BTreeMap<String, Node>,
    b: &BTreeMap<String, Node>,
    ignore: &dyn Fn(&str, &mut Node),
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, va) in a {
        match b.get(k) {
            None => d.push(format!("only in left: {k}")),
            Some(vb) => {
                let (mut va, mut vb) = (va.clone(), vb.clone());
                ignore(k, &mut va);
                ignore(k, &mut vb);
                if va != vb {
                    d.push(format!("{k}: {va:?} != {vb:?}"));
                }
            }
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            d.push(format!("only in right: {k}"));
        }
    }
    d
}

pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

// ---------- the shared rich image ----------

use tar::EntryType;

pub const CAP: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

pub fn own(uid: u64, gid: u64, mode: u32) -> Own {
    Own {
        uid,
        gid,
        mode,
        mtime: 1_650_000_000,
    }
}

/// Three layers exercising adds, changes, deletes, opaque dirs, every entry
/// type, special modes, ownership and xattrs. `parent_symlink` adds an entry
/// written through a symlinked parent (umoci and flat follow it in-root).
pub fn rich_layers(c: [Comp; 3], parent_symlink: bool) -> Vec<(Vec<u8>, Comp)> {
    let mut l1 = Layer::new();
    l1.dir("./", DIR)
        .dir("etc/", DIR)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", ROOT)
        .file("etc/group", b"root:x:0:\nwheel:x:10:svc\n", ROOT)
        .dir("bin/", DIR)
        .file("bin/tool", b"tool v1", own(0, 0, 0o755))
        .hardlink("bin/tool-hl", "bin/tool")
        .file("bin/suid", b"suid", own(0, 10, 0o4755))
        .file("bin/sgid", b"sgid", own(0, 10, 0o2711))
        .dir_x("usr/", DIR, &[("user.kept", b"k")])
        .dir("usr/lib/", DIR)
        .symlink("lib", "usr/lib")
        .symlink("etc/abs", "/etc/passwd")
        .dir_x("data/", DIR, &[("user.dirattr", b"d")])
        .dir("data/tmp/", own(0, 0, 0o1777))
        .file("data/owned", b"mine", own(1000, 1001, 0o640))
        .file("data/to-delete", b"bye", ROOT)
        .dir("data/dir-to-delete/", DIR)
        .file("data/dir-to-delete/inner", b"bye too", ROOT)
        .dir("data/was-dir/", DIR)
        .file("data/was-dir/x", b"x", ROOT)
        .file("data/was-file", b"f", ROOT)
        .file_x(
            "data/xattr-file",
            b"x",
            ROOT,
            &[("user.test", b"hello"), ("security.capability", CAP)],
        )
        .dir("opq/", DIR)
        .file("opq/a", b"a", ROOT)
        .dir("opq/sub/", DIR)
        .file("opq/sub/b", b"b", ROOT)
        .dir("dev/", DIR)
        .dev("dev/null", EntryType::Char, 1, 3, own(0, 0, 0o666))
        .dev("dev/loop0", EntryType::Block, 7, 0, own(0, 6, 0o660))
        .dev("data/fifo", EntryType::Fifo, 0, 0, own(0, 0, 0o644));
    let mut l2 = Layer::new();
    l2.dir("etc/", DIR)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nsvc:x:1000:1000::/home/svc:/bin/sh\n",
            ROOT,
        )
        .file("bin/tool", b"tool v2", own(0, 0, 0o755))
        .dir("data/", DIR)
        .whiteout("data/to-delete")
        .whiteout("data/dir-to-delete")
        .whiteout("data/never-existed")
        .file("data/was-dir", b"now a file", ROOT)
        .dir("data/was-file/", DIR)
        .dir("opq/", own(0, 0, 0o750))
        .opaque("opq")
        .file("opq/new", b"new", ROOT)
        .symlink("etc/abs", "/etc/group");
    let mut l3 = Layer::new();
    l3.file("new/deep/file", b"implicit parents", ROOT).file(
        "bin/tool",
        b"tool v3",
        own(0, 0, 0o700),
    );
    if parent_symlink {
        l3.file("lib/libx.so", b"through a symlinked parent", ROOT);
    }
    vec![
        (l1.finish(), c[0]),
        (l2.finish(), c[1]),
        (l3.finish(), c[2]),
    ]
}
