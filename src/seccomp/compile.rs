//! OCI profile → BPF.
//!
//! Rules are resolved per architecture and per syscall the way runc and
//! libseccomp resolve them:
//! - a rule whose action equals the default action is dropped (runc);
//! - a rule with two conditions on the same argument becomes one rule per
//!   condition, any of which matches (runc); otherwise its conditions must
//!   all hold;
//! - names are resolved per architecture; a name an architecture lacks adds
//!   nothing there, a name no table knows is skipped with a warning;
//! - per syscall (libseccomp's db): the first unconditional rule wins over
//!   every conditional one, whether they come before or after it;
//!   conditional rules are tried in profile order and the first whose
//!   conditions all hold decides; none → the default action;
//! - 64-bit ABIs compare both 32-bit halves of an argument; 32-bit ABIs
//!   (x86, x32) compare the low half only, as libseccomp does.
//!
//! Known difference: libseccomp orders overlapping conditional rules of one
//! syscall by argument and operator rather than by profile order, and refuses
//! two rules with identical conditions and different actions; brig takes the
//! first in profile order. Engines' profiles have no such overlaps.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::bpf::{Builder, Label, AND_K, JEQ, JGE, JGT, LD_ABS, OFF_ARCH, OFF_ARGS, OFF_NR};
use super::{tables, Filter, Insn, Listener, SeccompError};

/// Kernel return values (SECCOMP_RET_*).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// SECCOMP_FILTER_FLAG_*.
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The kernel's BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

/// The syscall ABIs brig has tables for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Abi {
    X86_64,
    X86,
    X32,
}

impl Abi {
    fn name(self) -> &'static str {
        match self {
            Abi::X86_64 => "x86_64",
            Abi::X86 => "x86",
            Abi::X32 => "x32",
        }
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X86 => tables::X86,
            Abi::X32 => tables::X32,
        }
    }

    /// Whether arguments are 64 bits wide (both halves compared).
    fn wide(self) -> bool {
        self == Abi::X86_64
    }

    /// The syscall number of `name` in this ABI.
    pub fn number(self, name: &str) -> Option<u32> {
        let t = self.table();
        t.binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| t[i].1)
    }
}

/// The host's native ABI, and the ABIs its kernel can run.
fn host() -> Option<(Abi, &'static [Abi])> {
    if cfg!(target_arch = "x86_64") {
        Some((Abi::X86_64, &[Abi::X86_64, Abi::X86, Abi::X32]))
    } else {
        None
    }
}

/// An OCI architecture as an ABI of this host; `None` for one the host's
/// kernel never reports (its part of the filter could never run).
fn abi_of(arch: Arch, native: Abi, runs: &[Abi]) -> Option<Abi> {
    let abi = match arch {
        Arch::ScmpArchNative => native,
        Arch::ScmpArchX86_64 => Abi::X86_64,
        Arch::ScmpArchX86 => Abi::X86,
        Arch::ScmpArchX32 => Abi::X32,
        _ => return None,
    };
    runs.contains(&abi).then_some(abi)
}

/// An argument comparison, as in the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

/// One rule for one syscall: all conditions hold → action.
#[derive(Clone, Debug)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

/// How one syscall is decided, after libseccomp's merge.
#[derive(Clone, Debug)]
enum Decision {
    Always(u32),
    Rules(Vec<Rule>),
}

fn invalid(field: String, reason: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The kernel value of an action; `errno` is errnoRet (EPERM when absent, as runc).
fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    field: &str,
) -> Result<u32, SeccompError> {
    let data = |errno: Option<u32>| -> Result<u32, SeccompError> {
        match errno {
            None => Ok(libc::EPERM as u32),
            Some(e) if e <= 0xffff => Ok(e),
            Some(e) => Err(invalid(
                field.to_string(),
                format!("{e} does not fit the 16 bits seccomp returns"),
            )),
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data(errno)?,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data(errno)?,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => RET_USER_NOTIF,
    })
}

/// Compiles `linux.seccomp` into a filter; pure, runs in `create` before any fork.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let (native, runs) = host().ok_or(SeccompError::UnsupportedHost)?;
    let default = action_value(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == RET_USER_NOTIF {
        return Err(invalid(
            "linux.seccomp.defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }

    // The ABIs in the filter: libseccomp always has the native one.
    let mut abis: BTreeSet<Abi> = BTreeSet::from([native]);
    // The ABIs runc's -ENOSYS stub covers: the listed ones only.
    let mut listed: BTreeSet<Abi> = BTreeSet::new();
    for (i, arch) in s.architectures().iter().flatten().enumerate() {
        match abi_of(*arch, native, runs) {
            Some(abi) => {
                abis.insert(abi);
                listed.insert(abi);
            }
            None => crate::logging::debug(&format!(
                "linux.seccomp.architectures[{i}]: {arch} never runs on this host; its rules are left out"
            )),
        }
    }

    let rules = expand_rules(s, default)?;
    let has_notify = rules.iter().any(|r| r.action == RET_USER_NOTIF);
    let listener = if has_notify {
        let path = s
            .listener_path()
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| {
                invalid(
                    "linux.seccomp.listenerPath".into(),
                    "SCMP_ACT_NOTIFY needs a listenerPath for the seccomp agent",
                )
            })?;
        Some(Listener {
            path,
            metadata: s.listener_metadata().clone().unwrap_or_default(),
            ..Listener::default()
        })
    } else {
        None
    };

    // Names no table in the filter knows.
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    for r in &rules {
        if abis.iter().all(|a| a.number(&r.name).is_none()) {
            unknown.insert(&r.name);
        }
    }
    if !unknown.is_empty() {
        let on: Vec<&str> = abis.iter().map(|a| a.name()).collect();
        crate::logging::warn(&format!(
            "linux.seccomp: syscalls unknown on {} are ignored: {}",
            on.join(", "),
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    let enosys = enosys_applies(s);
    let mut parts = Vec::new();
    for &abi in &abis {
        let decisions = decide(abi, &rules);
        // runc's stub: the largest number the profile names, over all rules.
        let max = (enosys && listed.contains(&abi))
            .then(|| {
                s.syscalls()
                    .iter()
                    .flatten()
                    .flat_map(|r| r.names())
                    .filter_map(|n| abi.number(n))
                    .max()
            })
            .flatten();
        parts.push((abi, decisions, max));
    }
    let program = emit(&parts, default);
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLong(program.len()));
    }

    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        match f {
            // runc does not pass TSYNC either: the init is single-threaded.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            // The kernel accepts it only with a listener; without one there
            // is nothing to wait for.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                if has_notify {
                    flags |= FLAG_WAIT_KILLABLE_RECV;
                }
            }
        }
    }
    if has_notify {
        flags |= FLAG_NEW_LISTENER;
    }
    Ok(Filter {
        program,
        flags,
        listener,
    })
}

/// runc adds the -ENOSYS stub unless the default action lets syscalls run
/// (ALLOW, LOG, TRACE) or already is ENOSYS.
fn enosys_applies(s: &LinuxSeccomp) -> bool {
    let permissive = matches!(
        s.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    !permissive && s.default_errno_ret() != Some(libc::ENOSYS as u32)
}

/// A rule for one syscall name, in profile order.
struct NamedRule {
    name: String,
    conds: Vec<Cond>,
    action: u32,
}

/// Validates `syscalls[]` and expands it to one rule per name (and per
/// condition where runc splits them).
fn expand_rules(s: &LinuxSeccomp, default: u32) -> Result<Vec<NamedRule>, SeccompError> {
    let mut out = Vec::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = action_value(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
        let mut conds = Vec::new();
        let mut per_arg = [0u32; 6];
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() >= 6 {
                return Err(invalid(
                    format!("{field}.args[{j}].index"),
                    format!("{} is not an argument index (0 to 5)", a.index()),
                ));
            }
            per_arg[a.index()] += 1;
            conds.push(Cond {
                index: a.index() as u32,
                op: a.op(),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            });
        }
        for (j, name) in sc.names().iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("{field}.names[{j}]"),
                    "an empty name is not a syscall",
                ));
            }
            if action == RET_USER_NOTIF && (name == "write" || name == "sendmsg") {
                return Err(invalid(
                    format!("{field}.names[{j}]"),
                    format!("SCMP_ACT_NOTIFY cannot be used for {name}: the container's init needs it to hand the listener to the agent"),
                ));
            }
        }
        // runc: equal actions are redundant with the default and dropped.
        if action == default {
            continue;
        }
        // runc: two conditions on one argument make separate rules (OR).
        let split: Vec<Vec<Cond>> = if per_arg.iter().any(|&n| n > 1) {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        for name in sc.names() {
            for conds in &split {
                out.push(NamedRule {
                    name: name.clone(),
                    conds: conds.clone(),
                    action,
                });
            }
        }
    }
    Ok(out)
}

/// Merges the rules of one ABI per syscall number, as libseccomp's db does.
fn decide(abi: Abi, rules: &[NamedRule]) -> BTreeMap<u32, Decision> {
    let mut by_nr: BTreeMap<u32, Decision> = BTreeMap::new();
    for r in rules {
        let Some(nr) = abi.number(&r.name) else {
            continue;
        };
        let new = Rule {
            conds: r.conds.clone(),
            action: r.action,
        };
        match by_nr.get_mut(&nr) {
            None if new.conds.is_empty() => {
                by_nr.insert(nr, Decision::Always(new.action));
            }
            None => {
                by_nr.insert(nr, Decision::Rules(vec![new]));
            }
            // An unconditional rule is final.
            Some(Decision::Always(_)) => {}
            // An unconditional rule replaces the conditional ones.
            Some(d @ Decision::Rules(_)) if new.conds.is_empty() => {
                *d = Decision::Always(new.action);
            }
            Some(Decision::Rules(v)) => v.push(new),
        }
    }
    by_nr
}

/// The whole program: arch dispatch, then one part per ABI.
fn emit(parts: &[(Abi, BTreeMap<u32, Decision>, Option<u32>)], default: u32) -> Vec<Insn> {
    let mut b = Builder::default();
    let bad_arch = b.ret(RET_KILL_THREAD);
    let part = |abi: Abi| parts.iter().find(|p| p.0 == abi);

    // x32 first: the x86_64 part jumps to it with A still holding nr.
    let x32 = part(Abi::X32).map(|(abi, d, max)| emit_abi(&mut b, *abi, d, *max, default));
    let mut entries: Vec<(u32, Label)> = Vec::new();
    for (abi, d, max) in parts {
        match abi {
            Abi::X32 => {}
            Abi::X86_64 => {
                let body = emit_abi(&mut b, *abi, d, *max, default);
                // Bit 30 marks x32: its own part, or the bad-arch action.
                b.jump(JGE, X32_SYSCALL_BIT, x32.unwrap_or(bad_arch), body);
                entries.push((AUDIT_ARCH_X86_64, b.stmt(LD_ABS, OFF_NR)));
            }
            Abi::X86 => {
                let body = emit_abi(&mut b, *abi, d, *max, default);
                // The load falls through, so the body must come right after it.
                b.at_front(body);
                entries.push((AUDIT_ARCH_I386, b.stmt(LD_ABS, OFF_NR)));
            }
        }
    }
    let mut next = bad_arch;
    for (arch, entry) in entries.iter().rev() {
        next = b.jump(JEQ, *arch, *entry, next);
    }
    b.at_front(next);
    b.stmt(LD_ABS, OFF_ARCH);
    b.finish()
}

/// One ABI's part, entered with A = nr: the -ENOSYS check, then a binary
/// search over the syscall numbers with a rule block per conditional syscall.
fn emit_abi(
    b: &mut Builder,
    abi: Abi,
    decisions: &BTreeMap<u32, Decision>,
    max: Option<u32>,
    default: u32,
) -> Label {
    let mut targets: Vec<(u32, Label)> = Vec::with_capacity(decisions.len());
    // Rule blocks first, so the search's jumps are short.
    for (&nr, d) in decisions.iter().rev() {
        let l = match d {
            Decision::Always(a) => b.ret(*a),
            Decision::Rules(rules) => emit_rules(b, abi, rules, default),
        };
        targets.push((nr, l));
    }
    targets.reverse();
    let search = emit_search(b, &targets, default);
    match max {
        Some(max) => {
            let enosys = b.ret(RET_ERRNO | libc::ENOSYS as u32);
            b.jump(JGT, max, enosys, search)
        }
        None => search,
    }
}

/// Binary search on A = nr: a `jge` per inner node, `jeq`s at the leaves.
fn emit_search(b: &mut Builder, targets: &[(u32, Label)], default: u32) -> Label {
    if targets.len() <= 4 {
        let mut next = b.ret(default);
        for &(nr, l) in targets.iter().rev() {
            next = b.jump(JEQ, nr, l, next);
        }
        return next;
    }
    let mid = targets.len() / 2;
    let right = emit_search(b, &targets[mid..], default);
    let left = emit_search(b, &targets[..mid], default);
    b.jump(JGE, targets[mid].0, right, left)
}

/// The conditional rules of one syscall: each rule's conditions in turn, the
/// first rule whose conditions all hold decides.
fn emit_rules(b: &mut Builder, abi: Abi, rules: &[Rule], default: u32) -> Label {
    let mut next = b.ret(default);
    for r in rules.iter().rev() {
        let mut pass = b.ret(r.action);
        for c in r.conds.iter().rev() {
            pass = emit_cond(b, abi, c, pass, next);
        }
        next = pass;
    }
    next
}

/// Offsets of an argument's low and high words in seccomp_data.
fn arg_offsets(index: u32) -> (u32, u32) {
    let base = OFF_ARGS + 8 * index;
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// One comparison: goes to `t` when it holds, to `f` otherwise.
fn emit_cond(b: &mut Builder, abi: Abi, c: &Cond, t: Label, f: Label) -> Label {
    use LinuxSeccompOperator as O;
    let (lo_off, hi_off) = arg_offsets(c.index);
    // MASKED_EQ: (arg & value) == (valueTwo & value), as libseccomp masks the datum.
    let (mask, datum) = match c.op {
        O::ScmpCmpMaskedEq => (c.value, c.value_two & c.value),
        _ => (u64::MAX, c.value),
    };
    let (m_lo, m_hi) = (mask as u32, (mask >> 32) as u32);
    let (d_lo, d_hi) = (datum as u32, (datum >> 32) as u32);

    // The low word decides when the high words are equal (or not compared).
    let lo_jump = |b: &mut Builder| match c.op {
        O::ScmpCmpEq | O::ScmpCmpMaskedEq => b.jump(JEQ, d_lo, t, f),
        O::ScmpCmpNe => b.jump(JEQ, d_lo, f, t),
        O::ScmpCmpGt => b.jump(JGT, d_lo, t, f),
        O::ScmpCmpGe => b.jump(JGE, d_lo, t, f),
        O::ScmpCmpLt => b.jump(JGE, d_lo, f, t),
        O::ScmpCmpLe => b.jump(JGT, d_lo, f, t),
    };
    lo_jump(b);
    if m_lo != u32::MAX {
        b.stmt(AND_K, m_lo);
    }
    let lo = b.stmt(LD_ABS, lo_off);
    if !abi.wide() {
        return lo;
    }
    match c.op {
        O::ScmpCmpEq | O::ScmpCmpMaskedEq => {
            b.jump(JEQ, d_hi, lo, f);
        }
        O::ScmpCmpNe => {
            b.jump(JEQ, d_hi, lo, t);
        }
        O::ScmpCmpGt | O::ScmpCmpGe => {
            // hi > d_hi → true; hi == d_hi → low word; below → false.
            let eq = b.jump(JEQ, d_hi, lo, f);
            b.jump(JGT, d_hi, t, eq);
        }
        O::ScmpCmpLt | O::ScmpCmpLe => {
            // hi > d_hi → false; hi == d_hi → low word; below → true.
            let eq = b.jump(JEQ, d_hi, lo, t);
            b.jump(JGT, d_hi, f, eq);
        }
    }
    if m_hi != u32::MAX {
        b.stmt(AND_K, m_hi);
    }
    b.stmt(LD_ABS, hi_off)
}

#[cfg(all(test, target_arch = "x86_64"))]
#[path = "compile_tests.rs"]
mod tests;
