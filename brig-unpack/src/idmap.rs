//! uid/gid mappings (`container:host:size`) used to shift file ownership for
//! user-namespaced bundles.

use crate::error::{Error, Result};

/// One contiguous range of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// Number of ids.
    pub size: u32,
}

/// A full uid or gid mapping; empty means identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<IdRange>);

impl IdRange {
    /// Parses `container:host:size`.
    pub fn parse(s: &str) -> Result<IdRange> {
        let bad = || Error::IdMap(format!("{s:?}: expected container:host:size"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        let r = IdRange {
            container: n(parts[0])?,
            host: n(parts[1])?,
            size: n(parts[2])?,
        };
        if r.size == 0
            || r.container.checked_add(r.size - 1).is_none()
            || r.host.checked_add(r.size - 1).is_none()
        {
            return Err(Error::IdMap(format!("{s:?}: empty or overflowing range")));
        }
        Ok(r)
    }
}

impl IdMap {
    /// Whether this is the identity mapping.
    pub fn is_identity(&self) -> bool {
        self.0.is_empty()
    }

    /// Maps a container id to its host id.
    pub fn to_host(&self, id: u32) -> Result<u32> {
        if self.0.is_empty() {
            return Ok(id);
        }
        self.0
            .iter()
            .find(|r| id >= r.container && id - r.container < r.size)
            .map(|r| r.host + (id - r.container))
            .ok_or_else(|| Error::IdMap(format!("id {id} is not covered by the mapping")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_map() {
        let m = IdMap(vec![
            IdRange::parse("0:100000:65536").unwrap(),
            IdRange::parse("70000:5:1").unwrap(),
        ]);
        assert_eq!(m.to_host(0).unwrap(), 100000);
        assert_eq!(m.to_host(1000).unwrap(), 101000);
        assert_eq!(m.to_host(70000).unwrap(), 5);
        assert!(m.to_host(65536).is_err());
        assert_eq!(IdMap::default().to_host(42).unwrap(), 42);
        for bad in ["1:2", "a:b:c", "0:0:0", "4294967295:0:2"] {
            assert!(IdRange::parse(bad).is_err(), "{bad}");
        }
    }
}
