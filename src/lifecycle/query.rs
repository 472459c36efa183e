//! `state` and `list`.

use std::io::Write;

use crate::error::Error;
use crate::state::Store;

/// Prints runc's state JSON of container `id`.
pub fn state(store: &Store, id: &str, out: &mut impl Write) -> Result<(), Error> {
    let c = store.load(id)?;
    let text =
        serde_json::to_string_pretty(&c.oci_state()).map_err(|e| Error::Usage(e.to_string()))?;
    writeln!(out, "{text}").map_err(Error::io("write state"))
}

/// Output of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// Prints every container, as a table, JSON, or ids only (`quiet`).
pub fn list(
    store: &Store,
    format: ListFormat,
    quiet: bool,
    out: &mut impl Write,
) -> Result<(), Error> {
    let all = store.list()?;
    let w = |e| Error::io("write list")(e);
    if quiet {
        for c in &all {
            writeln!(out, "{}", c.id()).map_err(w)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let states: Vec<_> = all
                .iter()
                .map(|c| {
                    let mut s = c.oci_state();
                    s["owner"] = owner_of(&c.dir).into();
                    s
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(states)).map_err(w)
        }
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|c| {
                    let s = c.oci_state();
                    [
                        c.id().to_string(),
                        s["pid"].to_string(),
                        s["status"].as_str().unwrap_or_default().to_string(),
                        c.saved.bundle.display().to_string(),
                        c.saved.created.clone(),
                        owner_of(&c.dir),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            write!(out, "{}", table(&header, &rows)).map_err(w)
        }
    }
}

/// The user owning a container's state directory, as runc's list shows it.
fn owner_of(dir: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Lays out rows like Go's tabwriter with padding 3, as runc's list does.
fn table(header: &[String; 6], rows: &[[String; 6]]) -> String {
    let mut widths = header.clone().map(|h| h.len());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(header).chain(rows) {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[i] + 3));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let h = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
        let rows = [["abc", "42", "running", "/b", "now", ""].map(String::from)];
        let t = table(&h, &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].find("PID"), lines[1].find("42"));
        assert_eq!(lines[0].find("STATUS"), lines[1].find("running"));
    }
}
