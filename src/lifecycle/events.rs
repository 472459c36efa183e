//! `events`: resource statistics and OOM notices, as runc prints them.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cgroups::stats;
use crate::error::Error;
use crate::state::{Status, Store};

/// How often the stream looks for OOM kills between two stats events.
const OOM_POLL: Duration = Duration::from_millis(100);

/// Parses a Go-style duration: `5s`, `100ms`, `1m`, `1.5s`.
pub fn parse_interval(s: &str) -> Result<Duration, Error> {
    let bad = || Error::Usage(format!("invalid interval {s:?} (use e.g. 5s or 100ms)"));
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints one stats event (`stats`), or a stream until the container stops.
pub fn events(
    store: &Store,
    id: &str,
    stats_once: bool,
    interval: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    let c = store.load(id)?;
    let cgroup = c
        .cgroup()
        .ok_or_else(|| Error::Usage(format!("container {id} has no cgroup")))?;
    let w = |e| Error::io("write events")(e);
    let stats_event = || json!({ "type": "stats", "id": id, "data": stats::collect(&cgroup) });
    if stats_once {
        return writeln!(out, "{}", stats_event()).map_err(w);
    }
    let mut ooms = stats::oom_kills(&cgroup);
    let mut next_stats = Instant::now() + interval;
    loop {
        std::thread::sleep(OOM_POLL.min(interval));
        let now = stats::oom_kills(&cgroup);
        if now > ooms {
            writeln!(out, "{}", json!({ "type": "oom", "id": id })).map_err(w)?;
            ooms = now;
        }
        if matches!(c.status(), Status::Stopped) {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            writeln!(out, "{}", stats_event()).map_err(w)?;
            out.flush().map_err(w)?;
            next_stats += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
    }
}
