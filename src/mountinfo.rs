//! /proc/PID/mountinfo parsing.

use std::borrow::Cow;
use std::path::Path;

/// One line of mountinfo, borrowed from the text (unescaped where needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    /// The path inside the filesystem that is mounted (field 4).
    pub root: Cow<'a, str>,
    pub mount_point: Cow<'a, str>,
    /// Per-mount options (ro, nosuid, ...).
    pub options: &'a str,
    /// Optional fields: `shared:N`, `master:N`, ...
    pub optional: &'a str,
    pub fs_type: &'a str,
    pub source: Cow<'a, str>,
    /// Per-superblock options (for cgroup v1, the controllers).
    pub super_options: &'a str,
}

impl Mount<'_> {
    /// The mount point as a path.
    pub fn mount_point(&self) -> &Path {
        Path::new(self.mount_point.as_ref())
    }
}

/// Reads the calling process's mount table, to be given to [`parse`].
pub fn read_self() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
}

/// Parses mountinfo text, skipping malformed lines.
pub fn parse(text: &str) -> Vec<Mount<'_>> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount<'_>> {
    let (left, right) = line.split_once(" - ")?;
    // The seventh piece is every optional field, as one string.
    let mut l = left.splitn(7, ' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let _dev = l.next()?;
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let options = l.next()?;
    let optional = l.next().unwrap_or("");
    let mut r = right.split(' ');
    Some(Mount {
        root,
        mount_point,
        options,
        optional,
        fs_type: r.next()?,
        source: unescape(r.next()?),
        super_options: r.next().unwrap_or(""),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point(), Path::new("/mnt two"));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].optional, "master:1 shared:2");
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[1].super_options, "rw,cpu");
    }
}
