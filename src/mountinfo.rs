//! /proc/PID/mountinfo parsing.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the filesystem that is mounted (field 4).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (ro, nosuid, ...).
    pub options: String,
    /// Optional fields: `shared:N`, `master:N`, ...
    pub optional: String,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (for cgroup v1, the controllers).
    pub super_options: String,
}

/// Reads the calling process's mount table.
pub fn read_self() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses mountinfo text, skipping malformed lines.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    // The seventh piece is every optional field, as one string.
    let mut l = left.splitn(7, ' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let _dev = l.next()?;
    let root = unescape(l.next()?);
    let mount_point = PathBuf::from(unescape(l.next()?));
    let options = l.next()?.to_string();
    let optional = l.next().unwrap_or("").to_string();
    let mut r = right.split(' ');
    Some(Mount {
        root,
        mount_point,
        options,
        optional,
        fs_type: r.next()?.to_string(),
        source: unescape(r.next()?),
        super_options: r.next().unwrap_or("").to_string(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
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
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt two"));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].optional, "master:1 shared:2");
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[1].super_options, "rw,cpu");
    }
}
