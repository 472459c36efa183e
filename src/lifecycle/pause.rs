//! `pause`, `resume` and `ps`: commands on the container's cgroup.

use std::io::Write;

use crate::cgroups::Cgroup;
use crate::error::Error;
use crate::state::{Container, Status, Store};

fn cgroup_of(c: &Container) -> Result<Cgroup, Error> {
    c.cgroup()
        .ok_or_else(|| Error::Usage(format!("container {} has no cgroup", c.id())))
}

/// Freezes every process of a running container.
pub fn pause(store: &Store, id: &str) -> Result<(), Error> {
    let (_lock, c) = store.lock(id)?;
    match c.status() {
        Status::Running | Status::Created => Ok(cgroup_of(&c)?.freeze(true)?),
        Status::Paused => Err(Error::Usage(format!("container {id} is already paused"))),
        _ => Err(Error::Usage("container not running".into())),
    }
}

/// Thaws a paused container.
pub fn resume(store: &Store, id: &str) -> Result<(), Error> {
    let (_lock, c) = store.lock(id)?;
    match c.status() {
        Status::Paused => Ok(cgroup_of(&c)?.freeze(false)?),
        _ => Err(Error::Usage(format!("container {id} is not paused"))),
    }
}

/// Output of `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsFormat {
    Table,
    Json,
}

/// Lists the container's processes: their pids as JSON, or the host's `ps`
/// output (with `ps_args`, default `-ef`) cut down to the container's rows.
pub fn ps(
    store: &Store,
    id: &str,
    format: PsFormat,
    ps_args: &[String],
    out: &mut impl Write,
) -> Result<(), Error> {
    let c = store.load(id)?;
    let pids = match c.cgroup() {
        Some(cg) => cg.pids()?,
        None => c.live_pid().into_iter().collect(),
    };
    let w = |e| Error::io("write ps")(e);
    if format == PsFormat::Json {
        return writeln!(out, "{}", serde_json::to_string(&pids).unwrap_or_default()).map_err(w);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let output = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(Error::io("run ps"))?;
    if !output.status.success() {
        return Err(Error::Usage(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Usage("ps output has no PID column".into()))?;
    writeln!(out, "{header}").map_err(w)?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{line}").map_err(w)?;
        }
    }
    Ok(())
}
