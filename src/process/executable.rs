//! Finding args[0] inside the container, worded as runc words failures.
//!
//! Docker maps `no such file or directory` and `executable file not found`
//! in this text to exit code 127, so the wording is part of the contract.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Resolves `arg0` with the container's PATH (from `env`), after pivot_root.
pub fn find(arg0: &str, env: &[String]) -> Result<PathBuf, String> {
    if arg0.contains('/') {
        return check(Path::new(arg0))
            .map(|_| PathBuf::from(arg0))
            .map_err(|e| format!("exec: \"{arg0}\": {e}"));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if check(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: \"{arg0}\": executable file not found in $PATH"
    ))
}

/// Go's findExecutable: a regular file with an execute bit. A directory or
/// a file without one is a bare "permission denied", from which Docker
/// derives exit code 126 (a failed stat keeps the `stat X:` wording, 127).
fn check(p: &Path) -> Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| format!("stat {}: {}", p.display(), os_text(&e)))?;
    if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
        return Err("permission denied".into());
    }
    Ok(())
}

/// The bare strerror text, without Rust's "(os error N)".
pub fn os_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::Error::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_absolute_path_is_worded_like_runc() {
        assert_eq!(
            find("/nonexistent", &[]).unwrap_err(),
            "exec: \"/nonexistent\": stat /nonexistent: no such file or directory"
        );
    }

    #[test]
    fn directories_and_plain_files_are_permission_denied_like_runc() {
        assert_eq!(
            find("/etc", &[]).unwrap_err(),
            "exec: \"/etc\": permission denied"
        );
        assert_eq!(
            find("/etc/passwd", &[]).unwrap_err(),
            "exec: \"/etc/passwd\": permission denied"
        );
    }

    #[test]
    fn path_lookup() {
        let env = vec!["PATH=/nowhere:/bin:/usr/bin".to_string()];
        assert!(find("sh", &env).unwrap().ends_with("sh"));
        assert_eq!(
            find("no-such-program-brig", &env).unwrap_err(),
            "exec: \"no-such-program-brig\": executable file not found in $PATH"
        );
    }
}
