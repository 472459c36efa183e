//! Creating and managing bundles: `unpack` (flat or overlay), and `mount`,
//! `umount`, `rm` for overlay bundles.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::config::{build_spec, SpecOptions};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::open_image;
use crate::layer::ApplyOptions;
use crate::overlay;
use crate::pipeline::{unpack_flat, UnpackLimits};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::safepath::Root;
use crate::store::Store;

/// Name of the state file of an overlay bundle.
pub const STATE_FILE: &str = "brig-unpack.json";
const MAX_ID_FILE: u64 = 4 << 20;

/// What an overlay bundle records about itself, to be mounted again later.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BundleState {
    /// Format version.
    pub version: u32,
    /// Store entry variant for uid/gid-shifted layers (None: unshifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Absolute path of the layer store.
    pub store: PathBuf,
    /// Diff IDs of the layers, bottom first.
    pub layers: Vec<Digest>,
    /// The IMAGE argument it was made from.
    pub image: String,
}

impl BundleState {
    /// Reads `BUNDLE/brig-unpack.json`.
    pub fn load(bundle: &Path) -> Result<BundleState> {
        let p = bundle.join(STATE_FILE);
        let bytes = fs::read(&p).at(&p)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "bundle state",
            name: p.display().to_string(),
            source,
        })
    }
}

/// Everything `brig-unpack IMAGE BUNDLE` can be asked to do.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Apply layers into a plain directory instead of an overlay of stored layers.
    pub flat: bool,
    /// Layer store to use in overlay mode (default: [`Store::default_path`]).
    pub store: Option<PathBuf>,
    /// Platform to pick from multi-platform images (default: the host's).
    pub platform: Option<Platform>,
    /// How config.json is generated.
    pub spec: SpecOptions,
    /// Ownership shifting and privilege handling for layer contents.
    pub apply: ApplyOptions,
    /// Size limit and parallelism.
    pub limits: UnpackLimits,
    /// Draw progress on a terminal.
    pub progress: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            flat: false,
            store: None,
            platform: None,
            spec: SpecOptions {
                terminal: true,
                ..Default::default()
            },
            apply: ApplyOptions::default(),
            limits: UnpackLimits::default(),
            progress: true,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Default)]
pub struct UnpackReport {
    /// Layers in the image.
    pub layers: usize,
    /// Layers found already extracted in the store.
    pub cached_layers: usize,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir().at(".")?.join(p))
    }
}

fn read_in_root(root: &Root, rel: &str) -> Result<Option<String>> {
    // Resolved inside the rootfs: an image's /etc/passwd symlinked to a host file is not followed out.
    match root.open_at(rel.as_bytes(), OFlag::O_RDONLY) {
        Ok(fd) => {
            let mut s = Vec::new();
            fs::File::from(fd)
                .take(MAX_ID_FILE)
                .read_to_end(&mut s)
                .at(root.path().join(rel))?;
            Ok(Some(String::from_utf8_lossy(&s).into_owned()))
        }
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(Error::io(root.path().join(rel), e.into())),
    }
}

/// Starts a root directory at the Unix epoch, as umoci does, so a rootfs whose
/// layers never mention `/` does not carry the time of the unpack.
pub fn epoch_times(dir: &Path) -> Result<()> {
    let zero = nix::sys::time::TimeSpec::new(0, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dir,
        &zero,
        &zero,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .at(dir)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    fs::rename(&tmp, path).at(path)
}

/// Turns `image` into a bundle at `bundle` (which must not exist or be empty).
pub fn unpack(image: &str, bundle: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    let r = ImageRef::parse(image)?;
    let bundle = absolute(bundle)?;
    if !opts.flat && !nix::unistd::geteuid().is_root() {
        // Store whiteouts are device nodes and the rootfs is an overlay mount: both need root.
        return Err(Error::Bundle {
            path: bundle,
            reason: "overlay bundles need root; use --flat for a rootless unpack".into(),
        });
    }
    let img = open_image(&r, opts.platform.as_ref())?;
    let created = match fs::read_dir(&bundle) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(Error::Bundle {
                    path: bundle,
                    reason: "exists and is not empty".into(),
                });
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&bundle)
                .at(&bundle)?;
            true
        }
        Err(e) => return Err(e).at(&bundle),
    };
    let result = unpack_into(image, &img, &bundle, opts);
    if result.is_err() {
        // Leave nothing half-made behind: unmount if we got that far, then remove what we created.
        let rootfs = bundle.join("rootfs");
        if overlay::is_mounted(&rootfs).unwrap_or(false) {
            let _ = overlay::umount(&rootfs);
        }
        if let Some(store) = opts
            .store
            .clone()
            .or_else(|| (!opts.flat).then(Store::default_path))
        {
            if let Ok(s) = Store::open(&store) {
                let _ = s.unregister(&bundle);
            }
        }
        if created {
            let _ = fs::remove_dir_all(&bundle);
        } else if let Ok(d) = fs::read_dir(&bundle) {
            for e in d.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
    }
    result
}

fn unpack_into(
    image_arg: &str,
    img: &crate::image::Image,
    bundle: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport> {
    let rootfs = bundle.join("rootfs");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&rootfs)
        .at(&rootfs)?;
    epoch_times(&rootfs)?;
    let progress = Progress::new(
        img.layers
            .iter()
            .map(|l| (l.label().chars().skip(7).take(12).collect(), l.size))
            .collect(),
        opts.progress,
    );
    let mut report = UnpackReport {
        layers: img.layers.len(),
        cached_layers: 0,
    };
    if opts.flat {
        unpack_flat(img, &rootfs, &opts.apply, &opts.limits, &progress)?;
    } else {
        let store = Store::open(&opts.store.clone().unwrap_or_else(Store::default_path))?
            .for_mapping(&opts.apply.uid_map, &opts.apply.gid_map);
        let _lock = store.lock_shared()?;
        let (lowers, cached) = store.ensure_layers(img, &opts.apply, &opts.limits, &progress)?;
        report.cached_layers = cached;
        let state = BundleState {
            version: 1,
            variant: store.variant().map(str::to_string),
            store: store.path().to_path_buf(),
            layers: img.layers.iter().map(|l| l.diff_id.clone()).collect(),
            image: image_arg.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| Error::Bundle {
            path: bundle.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(&bundle.join(STATE_FILE), &bytes)?;
        store.register(bundle)?;
        let upper = bundle.join("overlay/upper");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&upper)
            .at(&upper)?;
        if let Some(top) = lowers.last() {
            Store::copy_root_metadata(top, &upper)?;
        }
        mount_layers(bundle, &lowers)?;
    }
    progress.finish();
    let root = Root::open(&rootfs)?;
    let passwd = read_in_root(&root, "etc/passwd")?;
    let group = read_in_root(&root, "etc/group")?;
    let spec = build_spec(&img.config, passwd.as_deref(), group.as_deref(), &opts.spec)?;
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&bundle.join("config.json"), &json)?;
    Ok(report)
}

fn mount_layers(bundle: &Path, lowers: &[PathBuf]) -> Result<()> {
    let upper = bundle.join("overlay/upper");
    let work = bundle.join("overlay/work");
    for d in [&upper, &work] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(d)
            .at(d)?;
    }
    let mut lowers = lowers.to_vec();
    if lowers.is_empty() {
        // overlayfs needs at least one lower; an image without layers gets an empty one.
        let empty = bundle.join("overlay/empty");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&empty)
            .at(&empty)?;
        lowers.push(empty);
    }
    overlay::mount(&lowers, &upper, &work, &bundle.join("rootfs"))
}

/// Mounts the overlay rootfs of an existing overlay bundle.
pub fn mount(bundle: &Path) -> Result<()> {
    let bundle = absolute(bundle)?;
    let state = BundleState::load(&bundle)?;
    if overlay::is_mounted(&bundle.join("rootfs"))? {
        return Err(Error::Bundle {
            path: bundle,
            reason: "rootfs is already mounted".into(),
        });
    }
    let store = Store::open(&state.store)?.with_variant(state.variant.clone());
    let _lock = store.lock_shared()?;
    let mut lowers = Vec::new();
    for d in &state.layers {
        let p = store.layer_diff(d);
        if !p.is_dir() {
            return Err(Error::Store {
                path: store.path().to_path_buf(),
                reason: format!("layer {d} of this bundle is missing (was it garbage-collected?)"),
            });
        }
        lowers.push(p);
    }
    mount_layers(&bundle, &lowers)
}

/// Unmounts the overlay rootfs of a bundle.
pub fn umount(bundle: &Path) -> Result<()> {
    let rootfs = absolute(bundle)?.join("rootfs");
    if !overlay::is_mounted(&rootfs)? {
        return Err(Error::Bundle {
            path: bundle.to_path_buf(),
            reason: "rootfs is not mounted".into(),
        });
    }
    overlay::umount(&rootfs)
}

/// Removes a bundle (flat or overlay), unmounting and unregistering it first.
pub fn remove(bundle: &Path) -> Result<()> {
    let bundle = absolute(bundle)?;
    if !bundle.join("config.json").exists() && !bundle.join(STATE_FILE).exists() {
        return Err(Error::Bundle {
            path: bundle,
            reason: "does not look like a bundle (no config.json)".into(),
        });
    }
    let rootfs = bundle.join("rootfs");
    if overlay::is_mounted(&rootfs)? {
        overlay::umount(&rootfs)?;
    }
    if let Ok(state) = BundleState::load(&bundle) {
        if let Ok(store) = Store::open(&state.store) {
            store.unregister(&bundle)?;
        }
    }
    fs::remove_dir_all(&bundle).at(&bundle)
}
