//! Media types this crate accepts, and the checks against media-type confusion
//! (CVE-2021-41190: a document read as a manifest must not also be an index).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
    /// Unknown until the first bytes are seen (docker archives).
    Sniff,
}

/// Kind of JSON document a descriptor points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// An index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
}

/// Classifies a descriptor's media type as index or manifest.
pub fn doc_kind(media_type: &str) -> Option<DocKind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(DocKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(DocKind::Manifest),
        _ => None,
    }
}

/// Compression of a layer media type, or `None` for a type that is not a layer we can apply.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Whether a config media type is one we understand.
pub fn is_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// Checks a fetched index/manifest document against the media type its
/// descriptor claimed: the document's own `mediaType` must agree, and a document
/// that has both `manifests` and `config`/`layers` is ambiguous and refused.
pub fn check_document(digest: &str, claimed: &str, doc: &Map<String, Value>) -> Result<DocKind> {
    let err = |reason: String| Error::MediaType {
        digest: digest.to_string(),
        reason,
    };
    let kind = doc_kind(claimed).ok_or_else(|| {
        err(format!(
            "{claimed:?} is neither an image index nor a manifest"
        ))
    })?;
    match doc.get("mediaType") {
        None => {}
        Some(Value::String(own)) if own == claimed => {}
        Some(Value::String(own)) => {
            return Err(err(format!(
                "descriptor says {claimed:?} but the document says {own:?}"
            )))
        }
        Some(_) => return Err(err("mediaType is not a string".into())),
    }
    let has_manifests = doc.contains_key("manifests");
    let has_image = doc.contains_key("config") || doc.contains_key("layers");
    if has_manifests && has_image {
        return Err(err(
            "document has both manifests and config/layers (ambiguous)".into(),
        ));
    }
    match kind {
        DocKind::Index if has_image => Err(err(format!(
            "descriptor says {claimed:?} but the document is a manifest"
        ))),
        DocKind::Manifest if has_manifests => Err(err(format!(
            "descriptor says {claimed:?} but the document is an index"
        ))),
        _ => Ok(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn layer_types() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression(OCI_CONFIG), None);
    }

    #[test]
    fn confusion_is_refused() {
        let m =
            obj(json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}));
        assert_eq!(
            check_document("d", OCI_MANIFEST, &m).unwrap(),
            DocKind::Manifest
        );
        assert!(check_document("d", OCI_INDEX, &m).is_err());
        let both = obj(json!({"schemaVersion": 2, "manifests": [], "layers": []}));
        assert!(check_document("d", OCI_MANIFEST, &both).is_err());
        assert!(check_document("d", OCI_INDEX, &both).is_err());
        let untyped_index = obj(json!({"schemaVersion": 2, "manifests": []}));
        assert!(check_document("d", OCI_MANIFEST, &untyped_index).is_err());
        assert_eq!(
            check_document("d", OCI_INDEX, &untyped_index).unwrap(),
            DocKind::Index
        );
        assert!(check_document("d", OCI_CONFIG, &untyped_index).is_err());
    }
}
