//! Parsing of the IMAGE argument: `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:REF]`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where the image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// An OCI image layout directory.
    OciDir,
    /// An OCI image layout packed in a tar file.
    OciArchive,
    /// A `docker save` tarball.
    DockerArchive,
}

/// Which image inside a source to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The only image, or the one called "latest".
    Default,
    /// An `org.opencontainers.image.ref.name` (OCI) or a repo tag (docker).
    Name(String),
    /// A manifest digest (OCI).
    Digest(String),
    /// The N-th image of a docker archive (`@N`).
    Index(usize),
}

/// A parsed IMAGE argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Kind of source.
    pub transport: Transport,
    /// The directory or file.
    pub path: PathBuf,
    /// Which image in it.
    pub selector: Selector,
}

impl ImageRef {
    /// Parses `TRANSPORT:PATH[:REF]`; like skopeo, PATH ends at the first colon.
    pub fn parse(input: &str) -> Result<ImageRef> {
        let bad = |reason: &str| Error::Reference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (transport, rest) = input.split_once(':').ok_or_else(|| {
            bad("expected oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF]")
        })?;
        let transport = match transport {
            "oci" => Transport::OciDir,
            "oci-archive" => Transport::OciArchive,
            "docker-archive" => Transport::DockerArchive,
            other => {
                return Err(bad(&format!(
                    "unknown transport {other:?} (supported: oci, oci-archive, docker-archive)"
                )))
            }
        };
        let (path, reference) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        let selector = match reference {
            None => Selector::Default,
            Some("") => return Err(bad("empty reference after ':'")),
            Some(r) => {
                if let Some(n) = r.strip_prefix('@') {
                    if transport != Transport::DockerArchive {
                        return Err(bad("@N indexes are only meaningful for docker-archive"));
                    }
                    Selector::Index(n.parse().map_err(|_| bad("@N needs a number"))?)
                } else if r.starts_with("sha256:") || r.starts_with("sha512:") {
                    Selector::Digest(r.to_string())
                } else {
                    if r.chars().any(|c| c.is_control()) {
                        return Err(bad("reference contains control characters"));
                    }
                    Selector::Name(r.to_string())
                }
            }
        };
        Ok(ImageRef {
            transport,
            path: PathBuf::from(path),
            selector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_transports() {
        let r = ImageRef::parse("oci:/tmp/img:latest").unwrap();
        assert_eq!(r.transport, Transport::OciDir);
        assert_eq!(r.path, PathBuf::from("/tmp/img"));
        assert_eq!(r.selector, Selector::Name("latest".into()));

        let r = ImageRef::parse("oci-archive:img.tar").unwrap();
        assert_eq!(r.transport, Transport::OciArchive);
        assert_eq!(r.selector, Selector::Default);

        let r = ImageRef::parse("docker-archive:d.tar:busybox:1.36").unwrap();
        assert_eq!(r.transport, Transport::DockerArchive);
        assert_eq!(r.selector, Selector::Name("busybox:1.36".into()));

        let r = ImageRef::parse("docker-archive:d.tar:@1").unwrap();
        assert_eq!(r.selector, Selector::Index(1));

        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageRef::parse(&format!("oci:dir:{d}")).unwrap();
        assert_eq!(r.selector, Selector::Digest(d.into()));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "busybox",
            "docker://busybox",
            "oci:",
            "oci::x",
            "oci:dir:",
            "oci:dir:@1",
            "docker-archive:f:@x",
        ] {
            assert!(ImageRef::parse(s).is_err(), "{s:?} accepted");
        }
    }
}
