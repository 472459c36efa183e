//! Runtime log: `--log FILE` in the `--log-format` containerd and podman read.
//!
//! Messages go to the log file when one is given, to stderr otherwise; the
//! final error of a failed command is also printed to stderr (as runc does),
//! so a person at a terminal sees it whatever the flags say.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::timefmt;

/// Shape of each log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// logrus text: `time="..." level=error msg="..."`.
    Text,
    /// One JSON object a line: `{"level":"error","msg":"...","time":"..."}`.
    Json,
}

/// Severity of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<Mutex<File>>,
    format: LogFormat,
    min: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up the process-wide logger; called once by the CLI before any work.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(Mutex::new(
            OpenOptions::new().create(true).append(true).open(p)?,
        )),
        None => None,
    };
    let min = if debug { Level::Debug } else { Level::Info };
    let _ = LOGGER.set(Logger { file, format, min });
    Ok(())
}

/// Whether a log file was given (the CLI then also prints errors to stderr).
pub fn has_file() -> bool {
    LOGGER.get().is_some_and(|l| l.file.is_some())
}

/// Writes one message at `level`.
pub fn log(level: Level, msg: &str) {
    let (format, min) = LOGGER
        .get()
        .map_or((LogFormat::Text, Level::Info), |l| (l.format, l.min));
    if level < min {
        return;
    }
    let line = format_line(format, level, msg, SystemTime::now());
    match LOGGER.get().and_then(|l| l.file.as_ref()) {
        Some(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Logs an error.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}

/// Logs a warning.
pub fn warn(msg: &str) {
    log(Level::Warning, msg);
}

/// Logs a debug message (shown with `--debug`).
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Renders one line, newline included, in logrus' field order.
pub fn format_line(format: LogFormat, level: Level, msg: &str, t: SystemTime) -> String {
    let time = timefmt::rfc3339_secs(t);
    match format {
        LogFormat::Json => {
            let obj = serde_json::json!({ "level": level.name(), "msg": msg, "time": time });
            format!("{obj}\n")
        }
        LogFormat::Text => format!(
            "time=\"{time}\" level={} msg={}\n",
            level.name(),
            quote(msg)
        ),
    }
}

/// Quotes a text-format value the way logrus does when it holds spaces or quotes.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn json_line_matches_runc_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let line = format_line(LogFormat::Json, Level::Error, "oh \"no\"", t);
        assert_eq!(
            line,
            "{\"level\":\"error\",\"msg\":\"oh \\\"no\\\"\",\"time\":\"2023-11-14T22:13:20Z\"}\n"
        );
    }

    #[test]
    fn text_line_quotes_when_needed() {
        let t = UNIX_EPOCH;
        assert_eq!(
            format_line(LogFormat::Text, Level::Warning, "plain", t),
            "time=\"1970-01-01T00:00:00Z\" level=warning msg=plain\n"
        );
        assert!(format_line(LogFormat::Text, Level::Error, "two words", t)
            .ends_with("msg=\"two words\"\n"));
    }
}
