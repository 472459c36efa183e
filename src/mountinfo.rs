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
    text.split('\n').filter_map(parse_line).collect()
}

/// Fields are separated by single spaces; the optional fields, of any
/// number, end at a lone `-`. Split with a plain byte search: str::split's
/// searcher per field was most of a cgroup lookup's cost.
fn parse_line(line: &str) -> Option<Mount<'_>> {
    let mut rest = line;
    let (_id, _parent, _dev) = (field(&mut rest), field(&mut rest), field(&mut rest));
    let (root, mount_point, options) = (field(&mut rest), field(&mut rest), field(&mut rest));
    let opt_start = rest;
    let mut optional_len = 0;
    loop {
        if rest.is_empty() {
            return None;
        }
        let f = field(&mut rest);
        if f == "-" {
            break;
        }
        optional_len += f.len() + 1;
    }
    let optional = &opt_start[..optional_len.saturating_sub(1)];
    let (fs_type, source, super_options) = (field(&mut rest), field(&mut rest), field(&mut rest));
    if fs_type.is_empty() {
        return None;
    }
    Some(Mount {
        root: unescape(root),
        mount_point: unescape(mount_point),
        options,
        optional,
        fs_type,
        source: unescape(source),
        super_options,
    })
}

/// The text up to the next space (all of it if none), moving `rest` past it.
fn field<'a>(rest: &mut &'a str) -> &'a str {
    let end = rest.bytes().position(|b| b == b' ').unwrap_or(rest.len());
    let f = &rest[..end];
    *rest = rest.get(end + 1..).unwrap_or("");
    f
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
        assert_eq!(m[1].optional, "");
        assert_eq!(m[1].source, "cgroup");
    }

    #[test]
    fn skips_malformed_lines() {
        assert!(parse("").is_empty());
        assert!(parse("1 2 3:4 / /x rw shared:1\n").is_empty());
        assert!(parse("1 2 3:4 / /x rw -\n").is_empty());
        assert_eq!(parse("1 2 3:4 / /x rw - tmpfs\n")[0].source, "");
    }
}
