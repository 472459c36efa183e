//! Switching to process.user: groups, gid, uid, umask.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

/// A step of the identity switch that failed.
#[derive(Debug, thiserror::Error)]
#[error("{call}({value}): {source}")]
pub struct UserError {
    call: &'static str,
    value: String,
    source: nix::Error,
}

/// Becomes `user`, keeping the permitted capabilities so that the
/// configured sets can be applied afterwards.
pub fn switch(user: &User, may_setgroups: bool) -> Result<(), UserError> {
    set_keepcaps(true)?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace whose setgroups is "deny" only an empty list is
    // already in force; there is nothing to set.
    if may_setgroups {
        setgroups(&gids).map_err(|source| UserError {
            call: "setgroups",
            value: format!("{:?}", user.additional_gids().clone().unwrap_or_default()),
            source,
        })?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|source| UserError {
        call: "setresgid",
        value: user.gid().to_string(),
        source,
    })?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|source| UserError {
        call: "setresuid",
        value: user.uid().to_string(),
        source,
    })?;
    set_keepcaps(false)
}

fn set_keepcaps(on: bool) -> Result<(), UserError> {
    // SAFETY: PR_SET_KEEPCAPS takes an integer flag and no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) };
    nix::Error::result(rc)
        .map(drop)
        .map_err(|source| UserError {
            call: "prctl(PR_SET_KEEPCAPS)",
            value: on.to_string(),
            source,
        })
}

/// Sets the umask (runc's default is 0022).
pub fn set_umask(user: &User) {
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}
