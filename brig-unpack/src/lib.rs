//! brig-unpack: turn an OCI image (layout directory, OCI archive or `docker save`
//! tarball) into an OCI runtime bundle that `brig run` can start.
//!
//! The rootfs is either flat (`--flat`, every layer applied into `BUNDLE/rootfs`)
//! or an overlay of read-only layers kept once in a content-addressed store.

pub mod archive;
pub mod bundle;
pub mod compress;
pub mod config;
pub mod digest;
pub mod error;
pub mod idmap;
pub mod image;
pub mod layer;
pub mod layout;
pub mod media;
pub mod overlay;
pub mod pipeline;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod safepath;
pub mod source;
pub mod store;
pub mod user;

pub use error::{Error, Result};
