//! The content-addressed layer store: each layer extracted once, keyed by its
//! diff ID, shared read-only by every overlay bundle that uses it.
//!
//! Layout: `layers/ALG/HEX/diff` (the overlay lowerdir) and `layers/ALG/HEX/info.json`;
//! `tmp/` for extractions in progress; `bundles/` with one file per bundle that
//! uses the store (for gc); `lock` for flock. A layer is only ever published by
//! renaming a complete temp dir into place, so a crash or a concurrent unpack
//! never leaves a half layer that looks complete.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, futimens, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, IoContext, Result};
use crate::idmap::IdMap;
use crate::image::Image;
use crate::layer::{ApplyOptions, Whiteouts};
use crate::pipeline::{extract_layers, UnpackLimits};
use crate::progress::Progress;
use crate::safepath::{kind_of, Root};

/// An opened layer store.
pub struct Store {
    root: PathBuf,
    variant: Option<String>,
}

/// Held while a store is in use; gc takes it exclusively.
pub struct StoreLock {
    _flock: Flock<File>,
}

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Layers removed.
    pub layers: usize,
    /// Stale bundle registrations removed.
    pub bundles: usize,
    /// Leftover temp dirs removed.
    pub temps: usize,
}

#[derive(Serialize, Deserialize)]
struct LayerInfoFile {
    diff_id: Digest,
    blob: Option<Digest>,
    media_type: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn mkdir(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .at(p)
}

impl Store {
    /// The default store: `$BRIG_UNPACK_STORE`, else /var/lib/brig-unpack for
    /// root, else `$XDG_DATA_HOME/brig-unpack` (or ~/.local/share/brig-unpack).
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("BRIG_UNPACK_STORE") {
            return PathBuf::from(p);
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/brig-unpack");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(x).join("brig-unpack");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/share/brig-unpack")
    }

    /// Opens (creating if needed) the store at `root`, made absolute.
    pub fn open(root: &Path) -> Result<Store> {
        mkdir(root)?;
        let root = fs::canonicalize(root).at(root)?;
        for sub in ["layers/sha256", "layers/sha512", "tmp", "bundles"] {
            mkdir(&root.join(sub))?;
        }
        Ok(Store {
            root,
            variant: None,
        })
    }

    /// Layers extracted under a uid/gid mapping have shifted owners, so they
    /// are kept apart from the unshifted copies: the mapping's hash becomes part
    /// of the entry name.
    pub fn for_mapping(mut self, uid_map: &IdMap, gid_map: &IdMap) -> Store {
        self.variant = (!uid_map.is_identity() || !gid_map.is_identity()).then(|| {
            let text = format!("{:?}/{:?}", uid_map.0, gid_map.0);
            Digest::of(Algorithm::Sha256, text.as_bytes()).hex()[..16].to_string()
        });
        self
    }

    /// Uses the entries of a recorded variant (see [`Store::for_mapping`]).
    pub fn with_variant(mut self, variant: Option<String>) -> Store {
        self.variant = variant;
        self
    }

    /// The mapping variant in use, if any.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn lock(&self, arg: FlockArg) -> Result<StoreLock> {
        let p = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        let flock = Flock::lock(f, arg).map_err(|(_, e)| Error::io(&p, e.into()))?;
        Ok(StoreLock { _flock: flock })
    }

    /// Takes the store for use (several unpacks may share it; gc waits).
    pub fn lock_shared(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockShared)
    }

    /// Directory of a layer's entry.
    pub fn layer_entry(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(diff_id.algorithm().name())
            .join(entry_name(diff_id, self.variant.as_deref()))
    }

    /// The overlay lowerdir of a layer.
    pub fn layer_diff(&self, diff_id: &Digest) -> PathBuf {
        self.layer_entry(diff_id).join("diff")
    }

    /// Makes sure every layer of `image` is in the store, extracting missing
    /// ones in parallel; returns the lowerdirs bottom first and how many were
    /// already there. Call with the shared lock held.
    pub fn ensure_layers(
        &self,
        image: &Image,
        opts: &ApplyOptions,
        limits: &UnpackLimits,
        progress: &Progress,
    ) -> Result<(Vec<PathBuf>, usize)> {
        let mut opts = opts.clone();
        opts.whiteouts = Whiteouts::Overlay;
        let mut todo: Vec<(usize, PathBuf)> = Vec::new();
        let mut cached = 0;
        for l in &image.layers {
            if self.layer_entry(&l.diff_id).join("diff").is_dir() {
                cached += 1;
                progress.done(l.index, true);
            } else if !todo
                .iter()
                .any(|(i, _)| image.layers[*i].diff_id == l.diff_id)
            {
                let tmp = self.root.join("tmp").join(unique(l.diff_id.hex()));
                todo.push((l.index, tmp));
            }
        }
        for (_, tmp) in &todo {
            mkdir(tmp)?;
            fs::DirBuilder::new()
                .mode(0o755)
                .create(tmp.join("diff"))
                .at(tmp.join("diff"))?;
            crate::bundle::epoch_times(&tmp.join("diff"))?;
        }
        let work: Vec<(usize, PathBuf)> = todo.iter().map(|(i, t)| (*i, t.join("diff"))).collect();
        let work_refs: Vec<(usize, &Path)> = work.iter().map(|(i, p)| (*i, p.as_path())).collect();
        let results = extract_layers(image, &work_refs, &opts, limits, progress);
        let mut first_err = None;
        let mut stats = Vec::new();
        for ((i, tmp), r) in todo.iter().zip(results) {
            match r {
                Err(e) => {
                    first_err.get_or_insert(e);
                    let _ = fs::remove_dir_all(tmp);
                    continue;
                }
                Ok(st) => stats.push((*i, st)),
            }
            let l = &image.layers[*i];
            let info = LayerInfoFile {
                diff_id: l.diff_id.clone(),
                blob: l.blob_digest.clone(),
                media_type: l.media_type.clone(),
            };
            let ip = tmp.join("info.json");
            let mut f = File::create(&ip).at(&ip)?;
            f.write_all(&serde_json::to_vec_pretty(&info).unwrap_or_default())
                .at(&ip)?;
        }
        if let Some(e) = first_err {
            for (_, tmp) in &todo {
                let _ = fs::remove_dir_all(tmp);
            }
            return Err(e);
        }
        // Where each layer's contents are right now (store or temp), for the fix-up below.
        let dir_of = |i: usize| -> PathBuf {
            let d = &image.layers[i].diff_id;
            todo.iter()
                .find(|(j, _)| image.layers[*j].diff_id == *d)
                .map(|(_, t)| t.join("diff"))
                .unwrap_or_else(|| self.layer_diff(d))
        };
        for (i, st) in &stats {
            let lowers: Vec<PathBuf> = (0..*i).map(dir_of).collect();
            let mut dirs = st.implicit_dirs.clone();
            if !st.root_explicit {
                dirs.push(Vec::new());
            }
            inherit_metadata(&dir_of(*i), &lowers, &dirs)?;
        }
        // Make the layer contents durable before they become visible under their final name.
        if !todo.is_empty() {
            let d = File::open(&self.root).at(&self.root)?;
            nix::unistd::syncfs(&d).at(&self.root)?;
        }
        for (i, tmp) in &todo {
            let dest = self.layer_entry(&image.layers[*i].diff_id);
            match fs::rename(tmp, &dest) {
                Ok(()) => {}
                // Another unpack published the same layer first; theirs is as good as ours.
                Err(_) if dest.join("diff").is_dir() => {
                    let _ = fs::remove_dir_all(tmp);
                }
                Err(e) => return Err(e).at(&dest),
            }
        }
        Ok((
            image
                .layers
                .iter()
                .map(|l| self.layer_diff(&l.diff_id))
                .collect(),
            cached,
        ))
    }

    /// Copies the root directory's metadata of the top layer to a new upper
    /// dir, so the merged rootfs's `/` looks as it does in a flat unpack.
    pub fn copy_root_metadata(from: &Path, to: &Path) -> Result<()> {
        let m = fs::symlink_metadata(from).at(from)?;
        std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid())).at(to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777)).at(to)?;
        let t = |s: i64, ns: i64| TimeSpec::new(s, ns);
        utimensat(
            AT_FDCWD,
            to,
            &t(m.atime(), m.atime_nsec()),
            &t(m.mtime(), m.mtime_nsec()),
            UtimensatFlags::NoFollowSymlink,
        )
        .at(to)
    }

    fn registration(&self, bundle: &Path) -> PathBuf {
        let d = Digest::of(Algorithm::Sha256, bundle.as_os_str().as_encoded_bytes());
        self.root.join("bundles").join(d.hex())
    }

    /// Records that `bundle` (absolute) uses this store.
    pub fn register(&self, bundle: &Path) -> Result<()> {
        let p = self.registration(bundle);
        let tmp = self.root.join("tmp").join(unique("reg"));
        fs::write(&tmp, bundle.as_os_str().as_encoded_bytes()).at(&tmp)?;
        fs::rename(&tmp, &p).at(&p)
    }

    /// Forgets `bundle`.
    pub fn unregister(&self, bundle: &Path) -> Result<()> {
        let p = self.registration(bundle);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&p),
            _ => Ok(()),
        }
    }

    /// Removes layers no registered bundle uses, stale registrations and temp dirs.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let mut report = GcReport::default();
        let mut live = std::collections::HashSet::new();
        let regs = self.root.join("bundles");
        for e in fs::read_dir(&regs).at(&regs)? {
            let e = e.at(&regs)?;
            let bundle =
                fs::read(e.path()).map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
            let state = bundle
                .ok()
                .and_then(|b| crate::bundle::BundleState::load(&b).ok());
            match state {
                Some(s) if s.store == self.root => live.extend(
                    s.layers
                        .iter()
                        .map(|d| (d.algorithm(), entry_name(d, s.variant.as_deref()))),
                ),
                _ => {
                    fs::remove_file(e.path()).at(e.path())?;
                    report.bundles += 1;
                }
            }
        }
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("layers").join(alg.name());
            for e in fs::read_dir(&dir).at(&dir)? {
                let e = e.at(&dir)?;
                let name = e.file_name().to_string_lossy().into_owned();
                let used = live.contains(&(alg, name));
                if !used {
                    // Rename first so a half-deleted layer never sits under its digest.
                    let doomed = self.root.join("tmp").join(unique("gc"));
                    fs::rename(e.path(), &doomed).at(e.path())?;
                    fs::remove_dir_all(&doomed).at(&doomed)?;
                    report.layers += 1;
                }
            }
        }
        // With the exclusive lock held no unpack is running, so every temp entry is debris.
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).at(&tmp)? {
            let e = e.at(&tmp)?;
            let p = e.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.at(&p)?;
            report.temps += 1;
        }
        Ok(report)
    }
}

/// A layer tar that adds `a/b/c` without entries for `a/` and `a/b/` makes those
/// directories exist in the layer's own directory, where overlayfs would let
/// their default metadata hide the real one from lower layers. Give each such
/// directory the metadata of the nearest lower layer that has it, as a flat
/// unpack would show.
fn inherit_metadata(layer: &Path, lowers_bottom_first: &[PathBuf], dirs: &[Vec<u8>]) -> Result<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let root = Root::open(layer)?;
    let lowers: Vec<Root> = lowers_bottom_first
        .iter()
        .rev()
        .map(|l| Root::open(l))
        .collect::<Result<_>>()?;
    for rel in dirs {
        let mut found = None;
        for lower in &lowers {
            match lower.open_at(rel, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
                Ok(fd) => {
                    let st = nix::sys::stat::fstat(&fd).at(lower.path())?;
                    // A directory is what we want; anything else (a whiteout included) ends the search.
                    if kind_of(&st) == SFlag::S_IFDIR {
                        found = Some(st);
                    }
                    break;
                }
                Err(_) => continue,
            }
        }
        let Some(st) = found else { continue };
        let p = layer.join(String::from_utf8_lossy(rel).as_ref());
        let fd = root
            .open_at(
                rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            )
            .at(&p)?;
        nix::unistd::fchown(fd.as_fd(), Some(st.st_uid.into()), Some(st.st_gid.into())).at(&p)?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777)).at(&p)?;
        futimens(
            fd.as_fd(),
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
        .at(&p)?;
    }
    Ok(())
}

fn entry_name(diff_id: &Digest, variant: Option<&str>) -> String {
    match variant {
        None => diff_id.hex().to_string(),
        Some(v) => format!("{}-{v}", diff_id.hex()),
    }
}
