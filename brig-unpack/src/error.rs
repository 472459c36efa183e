//! Typed errors: each names the blob, file or tar entry that failed.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while turning an image into a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The IMAGE argument could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    Reference { input: String, reason: String },

    /// The `--platform` value could not be parsed.
    #[error("invalid platform {input:?}: expected os/arch[/variant]")]
    Platform { input: String },

    /// A filesystem operation on a named file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A blob is missing, has the wrong size or the wrong digest.
    #[error("blob {digest}: {reason}")]
    Blob { digest: String, reason: String },

    /// A JSON document (index, manifest, config) could not be parsed.
    #[error("{what} {name}: invalid JSON: {source}")]
    Json {
        what: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },

    /// A document's media type is unknown or disagrees with what referenced it.
    #[error("blob {digest}: media type mismatch: {reason}")]
    MediaType { digest: String, reason: String },

    /// The image source does not hold what was asked for.
    #[error("{source_name}: {reason}")]
    Image { source_name: String, reason: String },

    /// A tar entry of a layer is hostile or cannot be applied.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A syscall failed while applying a tar entry of a layer.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    EntryIo {
        layer: String,
        entry: String,
        #[source]
        source: io::Error,
    },

    /// A layer stream could not be read or decompressed.
    #[error("layer {layer}: {source}")]
    LayerIo {
        layer: String,
        #[source]
        source: io::Error,
    },

    /// A layer unpacks to more bytes than allowed (decompression bomb guard).
    #[error("layer {layer}: unpacked size exceeds the limit of {limit} bytes (raise it with --max-size if the image is genuine)")]
    SizeLimit { layer: String, limit: u64 },

    /// The image configuration cannot be turned into a runtime spec.
    #[error("image config: {0}")]
    Config(String),

    /// The image's User field cannot be resolved.
    #[error("user {spec:?}: {reason}")]
    User { spec: String, reason: String },

    /// A uid/gid mapping option is malformed or does not cover an id.
    #[error("id mapping: {0}")]
    IdMap(String),

    /// The layer store is unusable.
    #[error("store {}: {reason}", path.display())]
    Store { path: PathBuf, reason: String },

    /// A bundle is not in the state an operation needs.
    #[error("bundle {}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },
}

impl Error {
    /// Wraps an io::Error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Adds a path to io results, so every io error says which file it was about.
pub trait IoContext<T> {
    /// Maps an io error to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, io::Error::from(e)))
    }
}
