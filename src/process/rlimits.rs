//! process.rlimits.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// An rlimit that could not be set.
#[derive(Debug, thiserror::Error)]
#[error("setrlimit {name} (soft {soft}, hard {hard}): {source}{hint}")]
pub struct RlimitError {
    name: String,
    soft: u64,
    hard: u64,
    source: nix::Error,
    hint: &'static str,
}

/// The resource number of an rlimit type.
pub fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets every rlimit of the process.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: r is a valid rlimit struct that the kernel only reads.
        let rc = unsafe { libc::setrlimit(resource(l.typ()), &r) };
        if let Err(source) = nix::Error::result(rc) {
            return Err(RlimitError {
                name: l.typ().to_string(),
                soft: l.soft(),
                hard: l.hard(),
                source,
                hint: if source == nix::Error::EPERM {
                    " (raising a hard limit needs CAP_SYS_RESOURCE)"
                } else {
                    ""
                },
            });
        }
    }
    Ok(())
}
