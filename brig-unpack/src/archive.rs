//! A tar file (`oci-archive:` or `docker-archive:`) as a [`Source`], read in place:
//! the member table is built once, then members are read by offset.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::source::Source;

enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A tar archive whose members are served by name.
pub struct TarSource {
    path: PathBuf,
    label: String,
    members: HashMap<String, Member>,
}

fn normalize(name: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            p => out.push(p),
        }
    }
    Some(out.join("/"))
}

impl TarSource {
    /// Indexes the archive at `path`; `label` is the transport shown in errors.
    pub fn open(path: &Path, label: &str) -> Result<TarSource> {
        let mut file = File::open(path).at(path)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).at(path)?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(Error::Image {
                source_name: format!("{label}:{}", path.display()),
                reason: "the archive is compressed; decompress it first (only plain tar is read in place)".into(),
            });
        }
        file.seek(SeekFrom::Start(0)).at(path)?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let bad = |e: std::io::Error| Error::Image {
            source_name: format!("{label}:{}", path.display()),
            reason: format!("not a readable tar archive: {e}"),
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalize(&raw_name) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let member = if kind.is_file() {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                // Symlinks are relative to their own directory, hardlinks to the archive root.
                let joined = if kind.is_symlink() && !target.starts_with('/') {
                    match name.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                match normalize(&joined) {
                    Some(t) => Member::Link(t),
                    None => continue,
                }
            } else {
                continue;
            };
            members.insert(name, member);
        }
        Ok(TarSource {
            path: path.to_path_buf(),
            label: label.to_string(),
            members,
        })
    }
}

impl Source for TarSource {
    fn name(&self) -> String {
        format!("{}:{}", self.label, self.path.display())
    }

    fn open(&self, name: &str) -> Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(mut key) = normalize(name) else {
            return Ok(None);
        };
        // Bounded, so a link cycle in a hostile archive cannot loop forever.
        for _ in 0..16 {
            match self.members.get(&key) {
                None => return Ok(None),
                Some(Member::Link(t)) => key = t.clone(),
                Some(Member::File { offset, size }) => {
                    let mut f = File::open(&self.path).at(&self.path)?;
                    f.seek(SeekFrom::Start(*offset)).at(&self.path)?;
                    return Ok(Some((Box::new(f.take(*size)), *size)));
                }
            }
        }
        Err(Error::Image {
            source_name: self.name(),
            reason: format!("member {name:?}: too many levels of links"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_member_names() {
        assert_eq!(
            normalize("./blobs/sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalize("/a//b/").as_deref(), Some("a/b"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../x"), None);
    }
}
