//! Resolving an image reference to a verified config and an ordered list of layers.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::archive::TarSource;
use crate::config::ImageConfig;
use crate::digest::{Digest, Expect, Verifier};
use crate::error::{Error, Result};
use crate::layout::LayoutDir;
use crate::media::{self, Compression, DocKind};
use crate::platform::Platform;
use crate::reference::{ImageRef, Selector, Transport};
use crate::source::Source;

/// JSON documents larger than this are refused rather than read into memory.
const MAX_JSON: u64 = 16 << 20;
/// Indexes nested deeper than this are refused (a cycle would otherwise loop).
const MAX_DEPTH: usize = 4;
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One layer to apply, bottom first.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// Position in the manifest, 0 = bottom.
    pub index: usize,
    /// Path of the blob inside the source.
    pub path: String,
    /// Digest of the blob as stored, when known (always for OCI).
    pub blob_digest: Option<Digest>,
    /// Size of the blob as stored, when a descriptor gives it.
    pub size: Option<u64>,
    /// Media type from the manifest (synthesised for docker archives).
    pub media_type: String,
    /// How the blob is compressed.
    pub compression: Compression,
    /// Digest of the uncompressed tar, from the config's rootfs.diff_ids.
    pub diff_id: Digest,
}

impl LayerInfo {
    /// Name used in errors and progress: the blob digest, else the member path.
    pub fn label(&self) -> String {
        match &self.blob_digest {
            Some(d) => d.to_string(),
            None => self.path.clone(),
        }
    }
}

/// A resolved image: verified config plus layers.
pub struct Image {
    /// Where the blobs are read from.
    pub source: Arc<dyn Source>,
    /// The parsed image config.
    pub config: ImageConfig,
    /// Digest of the manifest used, when there is one (OCI).
    pub manifest_digest: Option<Digest>,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
}

#[derive(Deserialize, Clone, Debug)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

fn descriptor_digest(d: &Descriptor) -> Result<(Digest, u64)> {
    let digest: Digest = d.digest.parse()?;
    let size = u64::try_from(d.size).map_err(|_| Error::Blob {
        digest: d.digest.clone(),
        reason: format!("negative size {}", d.size),
    })?;
    Ok((digest, size))
}

fn read_all(source: &dyn Source, path: &str, expect: Expect) -> Result<Vec<u8>> {
    let name = expect.name.clone();
    let (reader, _) = source.open(path)?.ok_or_else(|| Error::Blob {
        digest: name.clone(),
        reason: format!("missing from {}", source.name()),
    })?;
    let mut v = Verifier::new(reader, expect);
    let mut buf = Vec::new();
    v.read_to_end(&mut buf).map_err(|e| Error::Blob {
        digest: name,
        reason: e.to_string(),
    })?;
    v.finish()?;
    Ok(buf)
}

fn read_blob(source: &dyn Source, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    if size > MAX_JSON {
        return Err(Error::Blob {
            digest: digest.to_string(),
            reason: format!(
                "JSON document of {size} bytes is larger than the {MAX_JSON} byte limit"
            ),
        });
    }
    read_all(
        source,
        &blob_path(digest),
        Expect {
            name: digest.to_string(),
            digest: Some(digest.clone()),
            size: Some(size),
            limit: None,
        },
    )
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &'static str,
    name: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what,
        name: name.to_string(),
        source,
    })
}

/// Opens the image named by `r`, picking `platform` (or the host's) from indexes.
pub fn open_image(r: &ImageRef, platform: Option<&Platform>) -> Result<Image> {
    let want = platform.cloned().unwrap_or_else(Platform::host);
    match r.transport {
        Transport::OciDir => open_oci(Arc::new(LayoutDir::new(r.path.clone())), &r.selector, &want),
        Transport::OciArchive => open_oci(
            Arc::new(TarSource::open(&r.path, "oci-archive")?),
            &r.selector,
            &want,
        ),
        Transport::DockerArchive => open_docker(
            Arc::new(TarSource::open(&r.path, "docker-archive")?),
            &r.selector,
        ),
    }
}

fn image_err(source: &dyn Source, reason: String) -> Error {
    Error::Image {
        source_name: source.name(),
        reason,
    }
}

fn open_oci(source: Arc<dyn Source>, selector: &Selector, want: &Platform) -> Result<Image> {
    let src = source.as_ref();
    let layout = read_all(
        src,
        "oci-layout",
        Expect {
            name: "oci-layout".into(),
            digest: None,
            size: None,
            limit: Some(MAX_JSON),
        },
    )
    .map_err(|_| {
        image_err(
            src,
            "not an OCI image layout (no readable oci-layout file)".into(),
        )
    })?;
    let layout: Value = parse("oci-layout", "oci-layout", &layout)?;
    if layout.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
        return Err(image_err(
            src,
            "unsupported imageLayoutVersion (want 1.0.0)".into(),
        ));
    }
    let index_bytes = read_all(
        src,
        "index.json",
        Expect {
            name: "index.json".into(),
            digest: None,
            size: None,
            limit: Some(MAX_JSON),
        },
    )?;
    let index: Index = parse("index", "index.json", &index_bytes)?;

    let names = |ms: &[Descriptor]| -> String {
        let v: Vec<String> = ms
            .iter()
            .map(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .cloned()
                    .unwrap_or_else(|| d.digest.clone())
            })
            .collect();
        v.join(", ")
    };
    let candidates: Vec<&Descriptor> = match selector {
        Selector::Default => {
            if index.manifests.len() == 1 {
                index.manifests.iter().collect()
            } else {
                let latest: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| {
                        d.annotations
                            .as_ref()
                            .and_then(|a| a.get(REF_NAME))
                            .map(String::as_str)
                            == Some("latest")
                    })
                    .collect();
                if latest.is_empty() {
                    return Err(image_err(
                        src,
                        format!("{} images in index.json and none named \"latest\"; pick one with :REF ({})", index.manifests.len(), names(&index.manifests)),
                    ));
                }
                latest
            }
        }
        Selector::Name(n) => index
            .manifests
            .iter()
            .filter(|d| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)) == Some(n))
            .collect(),
        Selector::Digest(d) => index.manifests.iter().filter(|m| &m.digest == d).collect(),
        Selector::Index(_) => {
            return Err(image_err(
                src,
                "@N selects images of docker archives only".into(),
            ))
        }
    };
    let chosen = match candidates.len() {
        0 => {
            return Err(image_err(
                src,
                format!(
                    "no image matches the reference; available: {}",
                    names(&index.manifests)
                ),
            ))
        }
        1 => candidates[0],
        _ => candidates
            .iter()
            .copied()
            .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
            .ok_or_else(|| {
                image_err(
                    src,
                    format!("several images match the reference and none is for {want}"),
                )
            })?,
    };
    let (manifest_digest, manifest) = walk(src, chosen, want, 0)?;

    let (cfg_digest, cfg_size) = descriptor_digest(&manifest.config)?;
    if !media::is_config(&manifest.config.media_type) {
        return Err(Error::MediaType {
            digest: cfg_digest.to_string(),
            reason: format!(
                "{:?} is not an image config media type",
                manifest.config.media_type
            ),
        });
    }
    let config_bytes = read_blob(src, &cfg_digest, cfg_size)?;
    let config: ImageConfig = parse("image config", &cfg_digest.to_string(), &config_bytes)?;
    let diff_ids = config.diff_ids(&cfg_digest.to_string())?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Image {
            source_name: src.name(),
            reason: format!(
                "manifest {manifest_digest} has {} layers but config {cfg_digest} lists {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (i, (d, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        let (digest, size) = descriptor_digest(d)?;
        let compression =
            media::layer_compression(&d.media_type).ok_or_else(|| Error::MediaType {
                digest: digest.to_string(),
                reason: format!("{:?} is not a supported layer media type", d.media_type),
            })?;
        layers.push(LayerInfo {
            index: i,
            path: blob_path(&digest),
            blob_digest: Some(digest),
            size: Some(size),
            media_type: d.media_type.clone(),
            compression,
            diff_id,
        });
    }
    Ok(Image {
        source,
        config,
        manifest_digest: Some(manifest_digest),
        layers,
    })
}

fn walk(
    src: &dyn Source,
    desc: &Descriptor,
    want: &Platform,
    depth: usize,
) -> Result<(Digest, Manifest)> {
    let (digest, size) = descriptor_digest(desc)?;
    if depth > MAX_DEPTH {
        return Err(image_err(
            src,
            format!("indexes nested more than {MAX_DEPTH} deep at {digest}"),
        ));
    }
    let bytes = read_blob(src, &digest, size)?;
    let doc: Map<String, Value> = parse("manifest or index", &digest.to_string(), &bytes)?;
    match media::check_document(&digest.to_string(), &desc.media_type, &doc)? {
        DocKind::Manifest => Ok((
            digest.clone(),
            parse("manifest", &digest.to_string(), &bytes)?,
        )),
        DocKind::Index => {
            let index: Index = parse("index", &digest.to_string(), &bytes)?;
            let found = index
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)));
            match found {
                Some(d) => walk(src, d, want, depth + 1),
                None => {
                    let avail: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                        .collect();
                    Err(image_err(
                        src,
                        format!(
                            "index {digest} has no image for {want} (available: {})",
                            avail.join(", ")
                        ),
                    ))
                }
            }
        }
    }
}

/// Normalises a docker reference so `busybox`, `busybox:latest` and
/// `docker.io/library/busybox:latest` compare equal.
fn normalize_tag(r: &str) -> String {
    let mut s = r.strip_prefix("docker.io/").unwrap_or(r);
    s = s.strip_prefix("library/").unwrap_or(s);
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') || last.contains('@') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

/// Digest implied by a docker-archive member name (`HEX.json`, `blobs/sha256/HEX`).
fn digest_from_member(name: &str) -> Option<Digest> {
    let file = name.rsplit('/').next()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    let d: Digest = format!("sha256:{hex}").parse().ok()?;
    (name.ends_with(".json") && !name.contains('/') || name.starts_with("blobs/sha256/"))
        .then_some(d)
}

fn open_docker(source: Arc<dyn Source>, selector: &Selector) -> Result<Image> {
    let src = source.as_ref();
    let bytes = read_all(
        src,
        "manifest.json",
        Expect {
            name: "manifest.json".into(),
            digest: None,
            size: None,
            limit: Some(MAX_JSON),
        },
    )
    .map_err(|e| image_err(src, format!("not a docker archive: {e}")))?;
    let entries: Vec<DockerEntry> = parse("docker manifest", "manifest.json", &bytes)?;
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let entry = match selector {
        Selector::Default if entries.len() == 1 => &entries[0],
        Selector::Default => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(image_err(
                src,
                format!(
                    "{} images in the archive; pick one with :NAME:TAG or :@N ({})",
                    entries.len(),
                    all.join(", ")
                ),
            ));
        }
        Selector::Index(i) => entries.get(*i).ok_or_else(|| {
            image_err(
                src,
                format!("no image @{i}; the archive has {}", entries.len()),
            )
        })?,
        Selector::Name(n) => {
            let want = normalize_tag(n);
            entries
                .iter()
                .find(|e| tags(e).iter().any(|t| normalize_tag(t) == want))
                .ok_or_else(|| {
                    let all: Vec<String> = entries.iter().flat_map(tags).collect();
                    image_err(
                        src,
                        format!("no image tagged {n:?}; available: {}", all.join(", ")),
                    )
                })?
        }
        Selector::Digest(_) => {
            return Err(image_err(
                src,
                "docker archives are selected by tag or @N, not digest".into(),
            ))
        }
    };
    let cfg_digest = digest_from_member(&entry.config);
    let config_bytes = read_all(
        src,
        &entry.config,
        Expect {
            name: cfg_digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| entry.config.clone()),
            digest: cfg_digest.clone(),
            size: None,
            limit: Some(MAX_JSON),
        },
    )?;
    let config: ImageConfig = parse("image config", &entry.config, &config_bytes)?;
    let diff_ids = config.diff_ids(&entry.config)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(image_err(
            src,
            format!(
                "manifest.json lists {} layers but the config has {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let layers = entry
        .layers
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (path, diff_id))| {
            let blob_digest = digest_from_member(path).filter(|_| path.starts_with("blobs/"));
            LayerInfo {
                index: i,
                path: path.clone(),
                blob_digest,
                size: None,
                media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                compression: Compression::Sniff,
                diff_id,
            }
        })
        .collect();
    Ok(Image {
        source,
        config,
        manifest_digest: None,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_tags_normalise() {
        assert_eq!(normalize_tag("busybox"), "busybox:latest");
        assert_eq!(
            normalize_tag("docker.io/library/busybox:1.36"),
            "busybox:1.36"
        );
        assert_eq!(normalize_tag("localhost:5000/x"), "localhost:5000/x:latest");
    }

    #[test]
    fn member_digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(digest_from_member(&format!("{hex}.json")).is_some());
        assert!(digest_from_member(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_from_member("abc/layer.tar").is_none());
        assert!(digest_from_member(&format!("x/{hex}.json")).is_none());
    }
}
