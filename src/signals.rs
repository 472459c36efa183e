//! Signal names and numbers as `kill` accepts them.

use nix::sys::signal::Signal;

/// An unknown signal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid signal {0:?}")]
pub struct BadSignal(pub String);

/// Parses `9`, `KILL`, `SIGKILL`, `sigkill`, and real-time `RTMIN+3` as runc does.
pub fn parse(s: &str) -> Result<i32, BadSignal> {
    let bad = || BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('-')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?
        };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("sigterm"), Ok(15));
        assert_eq!(parse("usr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("RTMIN+2"), Ok(libc::SIGRTMIN() + 2));
        assert!(parse("0").is_err());
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("999").is_err());
    }
}
