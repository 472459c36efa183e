//! OCI hooks: programs run at fixed points of the lifecycle with the
//! container's state on stdin.
//!
//! Where each kind runs: prestart and createRuntime in `create`, in the
//! runtime's namespaces, once the container's namespaces and mounts exist
//! (the init waits meanwhile); createContainer in the init, in the
//! container's mount namespace before pivot_root; startContainer in the
//! init after `start`, before the user's process is exec'd; poststart in
//! `start`; poststop in `delete`.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

/// The six kinds of hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    /// The kind's name in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// Every kind, in lifecycle order (what `features` advertises).
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// A hook that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot start: {source}")]
    Spawn {
        kind: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed: {status}{}", stderr_suffix(.stderr))]
    Failed {
        kind: &'static str,
        path: String,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook {path} timed out after {secs}s and was killed")]
    Timeout {
        kind: &'static str,
        path: String,
        secs: i64,
    },
}

fn stderr_suffix(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!(": stderr: {}", s.trim())
    }
}

/// Whether `hooks` has any hook of `kind`.
pub fn has(hooks: Option<&Hooks>, kind: Kind) -> bool {
    hooks.is_some_and(|h| !kind.of(h).is_empty())
}

/// Runs the hooks of `kind` in order, each with `state` on stdin; stops at
/// the first failure.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &str) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for hook in kind.of(hooks) {
        run_one(kind, hook, state)?;
    }
    Ok(())
}

fn run_one(kind: Kind, hook: &Hook, state: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let mut cmd = Command::new(hook.path());
    // args[0] is argv[0], as in execve; the rest are the arguments.
    if let Some(args) = hook.args().as_deref() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec; close_range is a
    // single async-signal-safe syscall. Nothing of brig's or its caller's
    // beyond stdio reaches the hook.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind: kind.name(),
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state.as_bytes());
    }
    let mut stderr = child.stderr.take();
    let deadline = hook
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                return Err(HookError::Spawn {
                    kind: kind.name(),
                    path,
                    source,
                })
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                kind: kind.name(),
                path,
                secs: hook.timeout().unwrap_or(0),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(s) = stderr.as_mut() {
        let _ = s.take(64 * 1024).read_to_string(&mut err);
    }
    Err(HookError::Failed {
        kind: kind.name(),
        path,
        status: status.to_string(),
        stderr: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: serde_json::Value) -> Hooks {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn argv0_env_and_stdin_reach_the_hook() {
        let dir = std::env::temp_dir().join(format!("brig-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hooks(serde_json::json!({ "poststop": [{
            "path": "/bin/sh",
            "args": ["my-hook", "-c", format!("echo \"$0 $FOO\" > {0}; cat >> {0}", out.display())],
            "env": ["FOO=bar"]
        }]}));
        run(Some(&h), Kind::Poststop, "{\"id\":\"x\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "my-hook bar\n{\"id\":\"x\"}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_and_timeout_are_reported() {
        let h = hooks(serde_json::json!({ "prestart": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]
        }]}));
        let e = run(Some(&h), Kind::Prestart, "{}").unwrap_err().to_string();
        assert!(
            e.contains("prestart hook /bin/sh failed") && e.contains("nope") && e.contains('3'),
            "{e}"
        );
        let h = hooks(serde_json::json!({ "createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1
        }]}));
        let e = run(Some(&h), Kind::CreateRuntime, "{}").unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e}");
    }
}
