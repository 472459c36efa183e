//! An OCI image layout directory as a [`Source`].

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::error::{IoContext, Result};
use crate::source::Source;

/// An OCI image layout on disk (`oci:DIR`).
pub struct LayoutDir {
    root: PathBuf,
}

impl LayoutDir {
    /// Uses `root` as the layout directory.
    pub fn new(root: PathBuf) -> Self {
        LayoutDir { root }
    }
}

impl Source for LayoutDir {
    fn name(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send>, u64)>> {
        // Callers only build paths from fixed names and validated digests, so no
        // component here can climb out of the layout directory.
        let full = self.root.join(path);
        match File::open(&full) {
            Ok(f) => {
                let meta = f.metadata().at(&full)?;
                Ok(Some((Box::new(f), meta.len())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&full),
        }
    }
}
