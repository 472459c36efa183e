//! Classic BPF for seccomp: the instruction format, a builder that lays the
//! program out back to front so every jump target is already placed, and (in
//! tests) an interpreter that runs a program on a `seccomp_data`.

use std::collections::HashMap;

/// One instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `BPF_LD | BPF_W | BPF_ABS`: A = 32-bit word at offset k of seccomp_data.
pub const LD_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`: A &= k.
pub const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`: pc += k.
pub const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JEQ: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K` (unsigned).
pub const JGT: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K` (unsigned).
pub const JGE: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub const RET: u16 = 0x06;

/// Offsets into `struct seccomp_data`.
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
pub const OFF_ARGS: u32 = 16;

/// A placed instruction, counted from the end of the program (the last
/// instruction is 1), which stays valid while the builder prepends more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Builds a program from its end towards its start.
///
/// Conditional jumps reach 255 instructions at most; a target further away
/// gets a `ja` trampoline right after the jump. Return instructions are shared
/// while they are in reach.
#[derive(Default)]
pub struct Builder {
    rev: Vec<Insn>,
    rets: HashMap<u32, Label>,
}

/// Beyond this distance a conditional jump goes through a trampoline; two
/// below 255 because up to two trampolines may be placed before it.
const NEAR: usize = 253;

impl Builder {
    fn push(&mut self, i: Insn) -> Label {
        self.rev.push(i);
        Label(self.rev.len())
    }

    /// A statement that falls through to the instruction placed just before.
    pub fn stmt(&mut self, code: u16, k: u32) -> Label {
        self.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        })
    }

    /// `ret action`, shared with an earlier one when it is in reach.
    pub fn ret(&mut self, action: u32) -> Label {
        if let Some(&l) = self.rets.get(&action) {
            if self.rev.len() - l.0 <= NEAR {
                return l;
            }
        }
        let l = self.stmt(RET, action);
        self.rets.insert(action, l);
        l
    }

    /// An unconditional jump to `target`.
    pub fn ja(&mut self, target: Label) -> Label {
        let off = self.rev.len() - target.0;
        self.push(Insn {
            code: JA,
            jt: 0,
            jf: 0,
            k: off as u32,
        })
    }

    /// Makes `l` the next instruction in execution order (a `ja` to it unless
    /// it already is), for a statement about to be placed that falls through.
    pub fn at_front(&mut self, l: Label) -> Label {
        if l.0 == self.rev.len() {
            l
        } else {
            self.ja(l)
        }
    }

    /// `if (A <code> k) goto t else goto f`.
    pub fn jump(&mut self, code: u16, k: u32, t: Label, f: Label) -> Label {
        let t = if self.rev.len() - t.0 > NEAR {
            self.ja(t)
        } else {
            t
        };
        let f = if self.rev.len() - f.0 > NEAR {
            self.ja(f)
        } else {
            f
        };
        let n = self.rev.len();
        self.push(Insn {
            code,
            jt: (n - t.0) as u8,
            jf: (n - f.0) as u8,
            k,
        })
    }

    /// The program in execution order.
    pub fn finish(mut self) -> Vec<Insn> {
        self.rev.reverse();
        self.rev
    }
}

/// Runs `prog` on one `seccomp_data`, as the kernel would, and returns the
/// action; `None` for a malformed program (bad opcode, jump out of range, no
/// return).
#[cfg(test)]
pub fn run(prog: &[Insn], nr: i32, arch: u32, args: [u64; 6]) -> Option<u32> {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog.get(pc)?;
        pc += 1;
        match i.code {
            LD_ABS => {
                let off = i.k as usize;
                let w = data.get(off..off + 4)?;
                a = u32::from_ne_bytes(w.try_into().ok()?);
            }
            AND_K => a &= i.k,
            JA => pc += i.k as usize,
            JEQ | JGT | JGE => {
                let hit = match i.code {
                    JEQ => a == i.k,
                    JGT => a > i.k,
                    _ => a >= i.k,
                };
                pc += usize::from(if hit { i.jt } else { i.jf });
            }
            RET => return Some(i.k),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_targets_get_trampolines() {
        let mut b = Builder::default();
        let allow = b.ret(1);
        for _ in 0..600 {
            b.stmt(LD_ABS, 0);
        }
        let deny = b.ret(2);
        b.jump(JEQ, 7, allow, deny);
        b.stmt(LD_ABS, OFF_NR);
        let prog = b.finish();
        assert_eq!(run(&prog, 7, 0, [0; 6]), Some(1));
        assert_eq!(run(&prog, 8, 0, [0; 6]), Some(2));
        // The far target was reached through a ja.
        assert!(prog.iter().any(|i| i.code == JA));
    }
}
