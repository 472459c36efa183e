//! Content digests (`sha256:`/`sha512:`) and a reader that verifies one while streaming.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A digest algorithm this crate can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the algorithm nearly every image uses.
    Sha256,
    /// SHA-512, allowed by the image spec.
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings and blob paths.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated `algorithm:hex` digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part; safe to use as a file name (validated on parse).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Computes the digest of a byte slice.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest> {
        let bad = |reason: &str| Error::Blob {
            digest: s.to_string(),
            reason: format!("invalid digest: {reason}"),
        };
        let (alg, hex) = s.split_once(':').ok_or_else(|| bad("missing ':'"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad("unsupported algorithm (sha256 and sha512 are)")),
        };
        // Hex is used as a file name, so anything but lowercase hex could be a path trick.
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(&format!(
                "expected {} lowercase hex characters",
                algorithm.hex_len()
            )));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hash of either algorithm.
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// Starts a hash.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Finishes into a digest.
    pub fn finish(self) -> Digest {
        let (algorithm, bytes): (Algorithm, Vec<u8>) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            hex: to_hex(&bytes),
        }
    }
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// What a [`Verifier`] checks its stream against.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Name used in errors (usually the digest, or an archive member).
    pub name: String,
    /// Expected digest; `None` only counts and limits.
    pub digest: Option<Digest>,
    /// Exact expected size, when a descriptor gives one.
    pub size: Option<u64>,
    /// Hard upper bound on bytes read (decompression bomb guard).
    pub limit: Option<u64>,
}

/// Marker payload of io errors raised when the size limit is hit, so callers can
/// turn it back into [`Error::SizeLimit`].
#[derive(Debug)]
pub struct LimitExceeded(pub u64);

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "size limit of {} bytes exceeded", self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// Hashes and counts everything read through it; [`Verifier::finish`] checks the result.
///
/// Size is enforced while reading (a blob longer than its descriptor, or over the
/// limit, fails at once) so a hostile blob cannot make us read without end.
pub struct Verifier<R> {
    inner: R,
    hasher: Option<Hasher>,
    expect: Expect,
    count: u64,
}

impl<R: Read> Verifier<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, expect: Expect) -> Self {
        let hasher = expect.digest.as_ref().map(|d| Hasher::new(d.algorithm()));
        Verifier {
            inner,
            hasher,
            expect,
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads to the end, then checks size and digest.
    pub fn finish(mut self) -> Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Blob {
                        digest: self.expect.name.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        if let Some(size) = self.expect.size {
            if self.count != size {
                return Err(Error::Blob {
                    digest: self.expect.name.clone(),
                    reason: format!(
                        "size mismatch: descriptor says {size} bytes, blob has {}",
                        self.count
                    ),
                });
            }
        }
        if let (Some(want), Some(h)) = (self.expect.digest.take(), self.hasher.take()) {
            let got = h.finish();
            if got != want {
                return Err(Error::Blob {
                    digest: self.expect.name.clone(),
                    reason: format!("digest mismatch: content hashes to {got}"),
                });
            }
        }
        Ok(self.count)
    }
}

impl<R: Read> Read for Verifier<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(size) = self.expect.size {
            if self.count > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: longer than its descriptor size of {size} bytes",
                        self.expect.name
                    ),
                ));
            }
            if n == 0 && self.count < size && !buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: truncated: {} of {size} bytes",
                        self.expect.name, self.count
                    ),
                ));
            }
        }
        if let Some(limit) = self.expect.limit {
            if self.count > limit {
                return Err(io::Error::other(LimitExceeded(limit)));
            }
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Finds a [`LimitExceeded`] inside an io error chain.
pub fn limit_of(e: &io::Error) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(l) = err.downcast_ref::<LimitExceeded>() {
            return Some(l.0);
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(l) = limit_of(io) {
                return Some(l);
            }
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(Digest::of(Algorithm::Sha256, b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for s in [
            "sha256",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "sha256:e3b0",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(s.parse::<Digest>().is_err(), "{s} accepted");
        }
    }

    #[test]
    fn sha512_known_value() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    fn verify(
        data: &[u8],
        digest: Option<Digest>,
        size: Option<u64>,
        limit: Option<u64>,
    ) -> Result<u64> {
        let v = Verifier::new(
            data,
            Expect {
                name: "blob".into(),
                digest,
                size,
                limit,
            },
        );
        v.finish()
    }

    #[test]
    fn verifier_checks_digest_size_and_limit() {
        let d = Digest::of(Algorithm::Sha256, b"hello");
        assert_eq!(verify(b"hello", Some(d.clone()), Some(5), None).unwrap(), 5);
        assert!(verify(b"hellO", Some(d.clone()), Some(5), None)
            .unwrap_err()
            .to_string()
            .contains("digest mismatch"));
        assert!(verify(b"hell", Some(d.clone()), Some(5), None)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert!(verify(b"hello!", Some(d), Some(5), None)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
        assert!(verify(b"hello", None, None, Some(4)).is_err());
    }
}
