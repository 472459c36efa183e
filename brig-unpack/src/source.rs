//! Where image files come from: a directory or members of a tar archive.

use std::io::Read;

use crate::error::Result;

/// Read access to the files of an image source by relative path
/// (`index.json`, `blobs/sha256/HEX`, `manifest.json`, ...).
pub trait Source: Send + Sync {
    /// Human-readable name used in errors.
    fn name(&self) -> String;

    /// Opens a file of the source; `Ok(None)` when it does not exist.
    fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send>, u64)>>;
}
