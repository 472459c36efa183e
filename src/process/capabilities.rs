//! The five capability sets of process.capabilities.
//!
//! Names are mapped to the `caps` crate once, in the parent; names this
//! kernel does not know are skipped with a warning, as the runtime spec asks.
//! Nothing is inheritable unless the config says so (CVE-2022-29162).

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::logging;

/// The sets to apply; a missing set in config.json is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// A capability call that failed.
#[derive(Debug, thiserror::Error)]
#[error("set {set} capabilities: {source}")]
pub struct CapsError {
    set: &'static str,
    source: caps::errors::CapsError,
}

impl Sets {
    /// Maps config.json's sets to what this kernel supports.
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Sets {
        let last = last_cap();
        let map = |name: &str, set: Option<&Capabilities>| -> CapsHashSet {
            let mut out = CapsHashSet::new();
            for cap in set.into_iter().flatten() {
                let full = format!("CAP_{cap}");
                match full.parse::<Capability>() {
                    Ok(c) if c.index() <= last => {
                        out.insert(c);
                    }
                    _ => logging::warn(&format!(
                        "process.capabilities.{name}: {full} is not known to this kernel; skipped"
                    )),
                }
            }
            out
        };
        match c {
            None => Sets::default(),
            Some(c) => Sets {
                bounding: map("bounding", c.bounding().as_ref()),
                effective: map("effective", c.effective().as_ref()),
                permitted: map("permitted", c.permitted().as_ref()),
                inheritable: map("inheritable", c.inheritable().as_ref()),
                ambient: map("ambient", c.ambient().as_ref()),
            },
        }
    }

    /// Drops everything outside the bounding set; needs CAP_SETPCAP, so it
    /// runs before the user is switched.
    /// Goes by number up to the kernel's last capability, so that one newer
    /// than the caps crate is dropped too.
    pub fn limit_bounding(&self) -> Result<(), CapsError> {
        let keep = self.bounding.iter().fold(0u64, |m, c| m | c.bitmask());
        for cap in (0..=last_cap()).filter(|&c| keep & (1u64 << c) == 0) {
            if capbset(libc::PR_CAPBSET_DROP, cap) < 0 {
                let e = std::io::Error::last_os_error();
                return Err(CapsError {
                    set: "bounding",
                    source: format!("PR_CAPBSET_DROP of capability {cap}: {e}").into(),
                });
            }
        }
        Ok(())
    }

    /// Sets the other four sets, after the user switch (with keep-caps on).
    pub fn apply(&self) -> Result<(), CapsError> {
        let set = |name, which, value: &CapsHashSet| {
            caps::set(None, which, value).map_err(|source| CapsError { set: name, source })
        };
        // Inheritable first, while CAP_SETPCAP is still effective; then
        // effective before permitted, as effective must stay a subset.
        set("inheritable", CapSet::Inheritable, &self.inheritable)?;
        set("effective", CapSet::Effective, &self.effective)?;
        set("permitted", CapSet::Permitted, &self.permitted)?;
        // The ambient set can only hold what is permitted and inheritable.
        let ambient: CapsHashSet = self
            .ambient
            .iter()
            .filter(|c| self.permitted.contains(c) && self.inheritable.contains(c))
            .copied()
            .collect();
        if ambient.len() != self.ambient.len() {
            logging::warn("process.capabilities.ambient: capabilities not both permitted and inheritable were left out");
        }
        caps::clear(None, CapSet::Ambient).map_err(|source| CapsError {
            set: "ambient",
            source,
        })?;
        // caps::set probes and lowers every capability one prctl at a time
        // (82 calls); after the clear an empty set needs none of them.
        if ambient.is_empty() {
            return Ok(());
        }
        set("ambient", CapSet::Ambient, &ambient)
    }
}

/// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap),
/// found by bisection with PR_CAPBSET_READ, which fails beyond it: six
/// prctl calls where asking for each capability took forty-one. Found once
/// per process; the init forked from brig inherits it.
fn last_cap() -> u8 {
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        let known = |cap: u8| capbset(libc::PR_CAPBSET_READ, cap) >= 0;
        // Invariant: `lo` is known (CAP_CHOWN, 0, always is), `hi` is not.
        let (mut lo, mut hi) = (0u8, 64u8);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if known(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    })
}

/// prctl(PR_CAPBSET_READ or PR_CAPBSET_DROP, cap).
fn capbset(op: libc::c_int, cap: u8) -> libc::c_int {
    // SAFETY: both operations take a capability number and touch only the
    // calling thread's bounding set.
    unsafe { libc::prctl(op, libc::c_ulong::from(cap), 0, 0, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_and_leaves_missing_sets_empty() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"]}"#,
        )
        .unwrap();
        let s = Sets::from_spec(Some(&c));
        assert!(s.bounding.contains(&Capability::CAP_KILL));
        assert!(s.bounding.contains(&Capability::CAP_CHOWN));
        assert_eq!(s.effective.len(), 1);
        assert!(s.inheritable.is_empty() && s.ambient.is_empty());
    }

    #[test]
    fn last_cap_is_the_kernels() {
        let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
        assert_eq!(last_cap().to_string(), text.trim());
    }
}
