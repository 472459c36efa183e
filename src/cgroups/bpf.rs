//! Device rules on cgroup v2: a small eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE, emitted here instruction by instruction
//! (no C toolchain or libbpf at run time) and attached to the cgroup.
//!
//! The program checks the rules from the last to the first and returns the
//! verdict of the first that matches, so later rules win as in config.json;
//! nothing matching means deny.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One eBPF instruction, as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JSET_K: u8 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// bpf_cgroup_dev_ctx: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Emits the program for `rules`.
pub fn emit(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16), // r3 = requested access
        insn(LDX_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for rule in rules.iter().rev() {
        let mut checks: Vec<(u8, u8, i32)> = Vec::new();
        match rule.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => {
                checks.push((JNE_K, 2, DEV_CHAR))
            }
            Some(LinuxDeviceType::B) => checks.push((JNE_K, 2, DEV_BLOCK)),
            // Fifos are not devices to the cgroup: the rule can match nothing.
            Some(LinuxDeviceType::P) => continue,
            Some(LinuxDeviceType::A) | None => {}
        }
        let access = rule
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm");
        let mut allowed = 0;
        for c in access.chars() {
            allowed |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        let outside = !allowed & (ACC_READ | ACC_WRITE | ACC_MKNOD);
        if outside != 0 {
            // A request with any access the rule does not name is not its business.
            checks.push((JSET_K, 3, outside));
        }
        if let Some(major) = rule.major().filter(|&m| m >= 0) {
            checks.push((JNE_K, 4, major as i32));
        }
        if let Some(minor) = rule.minor().filter(|&m| m >= 0) {
            checks.push((JNE_K, 5, minor as i32));
        }
        let n = checks.len();
        for (i, (code, reg, imm)) in checks.into_iter().enumerate() {
            // Skip the remaining checks and the two verdict instructions.
            let skip = (n - i - 1 + 2) as i16;
            prog.push(insn(code, reg, 0, skip, imm));
        }
        prog.push(insn(MOV64_K, 0, 0, 0, i32::from(rule.allow())));
        prog.push(insn(EXIT, 0, 0, 0, 0));
        if n == 0 {
            // A rule matching everything decides every request: the kernel's
            // verifier refuses the unreachable code that would follow.
            return prog;
        }
    }
    prog.push(insn(MOV64_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The prefix of `union bpf_attr` that BPF_PROG_LOAD reads; the kernel
/// requires the rest of the union it knows to be zero, hence the padding.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [u8; 56],
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: [u8; 44],
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> nix::Result<libc::c_long> {
    // SAFETY: attr is a live repr(C) bpf_attr prefix padded with zeros, and
    // its size is passed; the kernel reads it (and writes only the log,
    // whose buffer the attr describes).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    nix::Error::result(rc)
}

fn load(prog: &[Insn]) -> Result<OwnedFd, String> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"brig_devcg");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
        _pad: [0; 56],
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            Err(format!(
                "bpf(BPF_PROG_LOAD): {e}: {}",
                text.trim_end_matches('\0').trim()
            ))
        }
    }
}

/// Loads the device filter for `rules` and attaches it to the cgroup `dir`.
pub fn attach_device_filter(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let unsupported = |msg: String| CgroupError::Unsupported {
        resource: "devices".into(),
        msg,
    };
    let prog = load(&emit(rules)).map_err(unsupported)?;
    let cgroup = std::fs::File::open(dir).map_err(|source| CgroupError::Io {
        what: "open cgroup",
        path: dir.to_path_buf(),
        source,
    })?;
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        _pad: [0; 44],
    };
    bpf(BPF_PROG_ATTACH, &attr)
        .map(drop)
        .map_err(|e| unsupported(format!("bpf(BPF_PROG_ATTACH) to {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// Runs the program on one request, as the kernel would.
    fn eval(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let mut r = [0i64; 11];
        let ctx = [(typ | access << 16) as i64, major as i64, minor as i64];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = ctx[(i.off / 4) as usize];
                }
                AND32_K => r[dst] &= i.imm as i64,
                RSH32_K => r[dst] >>= i.imm,
                MOV64_K => r[dst] = i.imm as i64,
                JNE_K if r[dst] != i.imm as i64 => pc += i.off as usize,
                JSET_K if r[dst] & i.imm as i64 != 0 => pc += i.off as usize,
                JNE_K | JSET_K => {}
                EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_default_is_deny() {
        let prog = emit(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":136,"access":"rw"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ));
        assert_eq!(eval(&prog, DEV_CHAR, ACC_READ, 1, 3), 1, "read /dev/null");
        assert_eq!(
            eval(&prog, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "write /dev/null denied by the last rule"
        );
        assert_eq!(
            eval(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7),
            1,
            "pts"
        );
        assert_eq!(
            eval(&prog, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "mknod not granted"
        );
        assert_eq!(
            eval(&prog, DEV_BLOCK, ACC_READ, 1, 3),
            0,
            "block 1:3 is another device"
        );
        assert_eq!(eval(&prog, DEV_CHAR, ACC_READ, 5, 1), 0, "default deny");
    }

    #[test]
    fn allow_all() {
        let prog = emit(&rules(r#"[{"allow":true,"access":"rwm"}]"#));
        assert_eq!(eval(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
    }

    /// The kernel's verifier is the judge of the emitted code (needs root).
    #[test]
    fn kernel_verifier_accepts_the_programs() {
        let spec = crate::config::default_spec(false);
        let defaults = crate::cgroups::device_rules(&spec).expect("default spec has device rules");
        for set in [
            defaults,
            rules(r#"[{"allow":true,"access":"rwm"}]"#),
            Vec::new(),
        ] {
            match load(&emit(&set)) {
                Ok(_) => {}
                Err(e) if e.contains("EPERM") => {
                    eprintln!("not root: cannot ask the verifier ({e})");
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The verifier rejects unreachable instructions: nothing may follow a
    /// rule that matches everything (here the leading deny-all).
    #[test]
    fn no_code_after_a_catch_all_rule() {
        let prog = emit(&rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#,
        ));
        assert_eq!(prog.last().map(|i| i.code), Some(EXIT));
        assert_eq!(prog[prog.len() - 2], insn(MOV64_K, 0, 0, 0, 0));
        let jumps_past_end = prog.iter().enumerate().any(|(pc, i)| {
            (i.code == JNE_K || i.code == JSET_K) && pc + 1 + i.off as usize >= prog.len()
        });
        assert!(!jumps_past_end);
        let catch_all_then_more = emit(&rules(
            r#"[{"allow":true,"type":"c","major":1,"minor":3},{"allow":false,"access":"rwm"}]"#,
        ));
        assert_eq!(
            catch_all_then_more.len(),
            6 + 2,
            "the catch-all rule ends the program"
        );
    }
}
