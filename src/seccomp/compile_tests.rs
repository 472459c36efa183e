//! The compiler, checked by running its BPF in `bpf::run` on sample
//! `seccomp_data` and comparing the action with what runc would return.

use super::*;
use crate::seccomp::bpf::run;
use serde_json::json;

const EPERM: u32 = RET_ERRNO | 1;
const ENOSYS: u32 = RET_ERRNO | 38;

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("valid profile")
}

fn filter(v: serde_json::Value) -> Filter {
    compile(&profile(v)).expect("compiles")
}

fn nr(abi: Abi, name: &str) -> i32 {
    abi.number(name)
        .unwrap_or_else(|| panic!("{name} on {abi:?}")) as i32
}

/// The action for `name` on x86_64 with `args`.
fn on64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    run(f.program(), nr(Abi::X86_64, name), AUDIT_ARCH_X86_64, args).expect("well-formed")
}

fn on(f: &Filter, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
    let arch = if abi == Abi::X86 {
        AUDIT_ARCH_I386
    } else {
        AUDIT_ARCH_X86_64
    };
    run(f.program(), nr(abi, name), arch, args).expect("well-formed")
}

fn engine_profile(which: &str) -> LinuxSeccomp {
    let path = format!(
        "{}/integration/fixtures/engine-configs/{which}-create-config.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    serde_json::from_value(v["linux"]["seccomp"].clone()).expect("profile")
}

#[test]
fn every_action_encodes_like_runc() {
    let cases = [
        ("SCMP_ACT_KILL", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, RET_KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, RET_TRAP),
        ("SCMP_ACT_ERRNO", None, EPERM),
        ("SCMP_ACT_ERRNO", Some(13), RET_ERRNO | 13),
        ("SCMP_ACT_TRACE", None, RET_TRACE | 1),
        ("SCMP_ACT_TRACE", Some(7), RET_TRACE | 7),
        ("SCMP_ACT_LOG", None, RET_LOG),
        ("SCMP_ACT_ALLOW", None, RET_ALLOW),
    ];
    for (action, errno, want) in cases {
        let mut rule = json!({"names": ["mkdir"], "action": action});
        if let Some(e) = errno {
            rule["errnoRet"] = json!(e);
        }
        // A default that differs from every case, so no rule is dropped.
        let f = filter(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99,
            "syscalls": [rule]}),
        );
        assert_eq!(on64(&f, "mkdir", [0; 6]), want, "{action} {errno:?}");
        assert_eq!(
            on64(&f, "getpid", [0; 6]),
            RET_ERRNO | 99,
            "default for {action}"
        );
    }
}

#[test]
fn notify_needs_a_listener_path_and_sets_the_flag() {
    let p = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]});
    let err = compile(&profile(p.clone())).unwrap_err().to_string();
    assert!(err.contains("linux.seccomp.listenerPath"), "{err}");
    let mut p = p;
    p["listenerPath"] = json!("/run/agent.sock");
    p["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    let f = filter(p);
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_USER_NOTIF);
    assert_eq!(f.flags(), FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV);
    assert!(f.has_listener());
}

#[test]
fn notify_is_refused_where_runc_refuses_it() {
    let err = compile(&profile(json!({"defaultAction": "SCMP_ACT_NOTIFY",
        "listenerPath": "/x"})))
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("linux.seccomp.defaultAction:"), "{err}");
    let err = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("linux.seccomp.syscalls[1].names[1]:"),
        "{err}"
    );
}

#[test]
fn flags_map_like_runc() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
    // TSYNC is not passed (single-threaded init), WAIT_KILLABLE_RECV needs a listener.
    assert_eq!(f.flags(), FLAG_LOG | FLAG_SPEC_ALLOW);
}

#[test]
fn bad_fields_are_named() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["personality"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
            "linux.seccomp.defaultErrnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", ""],
                "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names[1]",
        ),
    ];
    for (p, field) in cases {
        let err = compile(&profile(p)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{field}:")), "{err}");
    }
}

#[test]
fn every_operator_on_64_bit_values() {
    const BIG: u64 = 0x0000_0001_0000_0005; // differs from 5 only in the high word
    /// (operator, value, valueTwo, whether an argument matches).
    type Case = (&'static str, u64, u64, fn(u64) -> bool);
    let ops: [Case; 7] = [
        ("SCMP_CMP_NE", BIG, 0, |a| a != BIG),
        ("SCMP_CMP_LT", BIG, 0, |a| a < BIG),
        ("SCMP_CMP_LE", BIG, 0, |a| a <= BIG),
        ("SCMP_CMP_EQ", BIG, 0, |a| a == BIG),
        ("SCMP_CMP_GE", BIG, 0, |a| a >= BIG),
        ("SCMP_CMP_GT", BIG, 0, |a| a > BIG),
        (
            "SCMP_CMP_MASKED_EQ",
            0xffff_0000_0000_00ff,
            0x1234_0000_0000_0005,
            |a| a & 0xffff_0000_0000_00ff == 0x1234_0000_0000_0005,
        ),
    ];
    let samples = [
        0,
        4,
        5,
        6,
        BIG - 1,
        BIG,
        BIG + 1,
        0x0000_0001_0000_0000,
        0x0000_0002_0000_0000,
        0x1234_0000_0000_0005,
        0x1234_ffff_0000_1105,
        0x1235_0000_0000_0005,
        u64::MAX,
    ];
    for (op, value, value_two, holds) in ops {
        let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}]}]}));
        for a in samples {
            let mut args = [0u64; 6];
            args[2] = a;
            let want = if holds(a) { EPERM } else { RET_ALLOW };
            assert_eq!(on64(&f, "personality", args), want, "{op} {a:#x}");
        }
    }
}

#[test]
fn x86_compares_the_low_word_only() {
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}]}),
    );
    assert_eq!(
        on(&f, Abi::X86, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(
        on(&f, Abi::X86, "personality", [8, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    // On x86_64 the same value needs a zero high word.
    assert_eq!(on64(&f, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(
        on64(&f, "personality", [u64::MAX, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
}

#[test]
fn conditions_of_one_rule_must_all_hold() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["mmap"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 10, "op": "SCMP_CMP_GT"},
            {"index": 1, "value": 4, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(on64(&f, "mmap", [11, 4, 0, 0, 0, 0]), EPERM);
    assert_eq!(on64(&f, "mmap", [10, 4, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(on64(&f, "mmap", [11, 5, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn conditions_on_one_argument_are_alternatives_as_in_runc() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": ["mmap"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(on64(&f, "mmap", [1, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(on64(&f, "mmap", [2, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(on64(&f, "mmap", [3, 0, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn rules_resolve_as_libseccomp_merges_them() {
    // An unconditional rule wins over conditional ones before it...
    let f = filter(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["personality"], "action": "SCMP_ACT_TRAP"}]}));
    assert_eq!(
        on64(&f, "personality", [8, 0, 0, 0, 0, 0]),
        RET_KILL_PROCESS
    );
    // ... and after it.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_LOG"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(on64(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_LOG);
    // A rule with the default action is dropped (runc), so it shadows nothing.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]}));
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_ALLOW);
    // Mixed actions in one profile.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
        {"names": ["rmdir"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["chdir"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getpid"], "action": "SCMP_ACT_LOG"}]}));
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_ERRNO | 5);
    assert_eq!(on64(&f, "rmdir", [0; 6]), RET_KILL_PROCESS);
    assert_eq!(on64(&f, "chdir", [0; 6]), RET_TRAP);
    assert_eq!(on64(&f, "getpid", [0; 6]), RET_LOG);
    assert_eq!(on64(&f, "read", [0; 6]), RET_ALLOW);
}

#[test]
fn architectures_dispatch_and_x32_is_explicit() {
    let rules = json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]);
    // Only x86_64: x86 and x32 are foreign, the bad-arch action kills.
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules}),
    );
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_ERRNO | 2);
    assert_eq!(on(&f, Abi::X86, "mkdir", [0; 6]), RET_KILL_THREAD);
    assert_eq!(on(&f, Abi::X32, "mkdir", [0; 6]), RET_KILL_THREAD);
    assert_eq!(
        run(f.program(), 2, 0xc000_00b7, [0; 6]),
        Some(RET_KILL_THREAD)
    );
    // All three: each ABI resolves the name to its own number.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}));
    for abi in [Abi::X86_64, Abi::X86, Abi::X32] {
        assert_eq!(on(&f, abi, "mkdir", [0; 6]), RET_ERRNO | 2, "{abi:?}");
        assert_eq!(on(&f, abi, "rmdir", [0; 6]), RET_ALLOW, "{abi:?}");
    }
    // x86's mkdir (39) is x86_64's getpid: no confusion between the ABIs.
    assert_eq!(nr(Abi::X86, "mkdir"), nr(Abi::X86_64, "getpid"));
    assert_eq!(on64(&f, "getpid", [0; 6]), RET_ALLOW);
    // No architectures: the native one only.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_ERRNO | 2);
    assert_eq!(on(&f, Abi::X86, "mkdir", [0; 6]), RET_KILL_THREAD);
    // Names an ABI lacks add nothing there (chown32 is x86 only).
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86"], "syscalls": [{"names": ["chown32", "no_such_call"],
        "action": "SCMP_ACT_ERRNO"}]}),
    );
    assert_eq!(on(&f, Abi::X86, "chown32", [0; 6]), EPERM);
    assert_eq!(on64(&f, "chown", [0; 6]), RET_ALLOW);
}

#[test]
fn newer_syscalls_get_enosys_as_in_runc() {
    let p = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write", "openat", "futex_waitv"], "action": "SCMP_ACT_ALLOW"}]});
    let f = filter(p.clone());
    let last = nr(Abi::X86_64, "futex_waitv");
    assert_eq!(on64(&f, "read", [0; 6]), RET_ALLOW);
    assert_eq!(
        on64(&f, "close", [0; 6]),
        EPERM,
        "below the last: the default"
    );
    let above = |abi: Abi, n: i32| {
        let arch = if abi == Abi::X86 {
            AUDIT_ARCH_I386
        } else {
            AUDIT_ARCH_X86_64
        };
        run(f.program(), n, arch, [0; 6]).unwrap()
    };
    assert_eq!(above(Abi::X86_64, last + 1), ENOSYS);
    assert_eq!(above(Abi::X86_64, 1000), ENOSYS);
    assert_eq!(above(Abi::X86, nr(Abi::X86, "futex_waitv") + 1), ENOSYS);
    // x32's largest number is one of its 512+ compat calls, so none of
    // read/write/openat/futex_waitv is above it... futex_waitv is 452 | bit 30.
    assert_eq!(above(Abi::X32, nr(Abi::X32, "futex_waitv") + 1), ENOSYS);
    // A permissive default gets no stub.
    let mut allow = p.clone();
    allow["defaultAction"] = json!("SCMP_ACT_LOG");
    allow["syscalls"][0]["action"] = json!("SCMP_ACT_ERRNO");
    let f = filter(allow);
    assert_eq!(
        run(f.program(), last + 1, AUDIT_ARCH_X86_64, [0; 6]),
        Some(RET_LOG)
    );
    // Architectures not listed get no stub (runc's stub covers listed ones).
    let mut unlisted = p;
    unlisted["architectures"] = json!(["SCMP_ARCH_X86"]);
    let f = filter(unlisted);
    assert_eq!(
        run(f.program(), last + 1, AUDIT_ARCH_X86_64, [0; 6]),
        Some(EPERM)
    );
}

#[test]
fn docker_profile() {
    let f = compile(&engine_profile("docker")).expect("compiles");
    assert!(f.program().len() < 4096);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "mkdir",
        "exit_group",
        "ptrace",
    ] {
        assert_eq!(on64(&f, name, [0; 6]), RET_ALLOW, "{name}");
    }
    // Denied with the default EPERM.
    for name in ["mount", "unshare", "setns", "bpf", "kexec_load", "reboot"] {
        assert_eq!(on64(&f, name, [0; 6]), EPERM, "{name}");
    }
    assert_eq!(on64(&f, "clone3", [0; 6]), ENOSYS);
    // personality: Docker's five values only.
    for v in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            on64(&f, "personality", [v, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "{v:#x}"
        );
    }
    assert_eq!(on64(&f, "personality", [1, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(
        on64(&f, "personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]),
        EPERM
    );
    // clone: no namespace flags.
    assert_eq!(
        on64(&f, "clone", [0x01_1200 | 17, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        on64(&f, "clone", [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(
        on64(&f, "clone", [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]),
        EPERM
    );
    // The 32-bit ABIs.
    assert_eq!(on(&f, Abi::X86, "socketcall", [0; 6]), RET_ALLOW);
    assert_eq!(on(&f, Abi::X86, "chown32", [0; 6]), RET_ALLOW);
    assert_eq!(on(&f, Abi::X86, "mount", [0; 6]), EPERM);
    assert_eq!(on(&f, Abi::X32, "read", [0; 6]), RET_ALLOW);
    // Newer than the profile: ENOSYS.
    assert_eq!(
        run(f.program(), 1000, AUDIT_ARCH_X86_64, [0; 6]),
        Some(ENOSYS)
    );
    // Every syscall of the table gets exactly the action the profile's
    // rules give it.
    let p = engine_profile("docker");
    let allowed: std::collections::HashSet<&str> = p
        .syscalls()
        .iter()
        .flatten()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        .flat_map(|r| r.names().iter().map(String::as_str))
        .collect();
    let last = Abi::X86_64
        .table()
        .iter()
        .filter(|(n, _)| {
            p.syscalls()
                .iter()
                .flatten()
                .any(|r| r.names().iter().any(|x| x == n))
        })
        .map(|(_, nr)| *nr)
        .max()
        .unwrap();
    for (name, n) in Abi::X86_64.table() {
        let got = run(f.program(), *n as i32, AUDIT_ARCH_X86_64, [0; 6]).unwrap();
        let want = if allowed.contains(name) {
            RET_ALLOW
        } else if *name == "clone3" || *n > last {
            ENOSYS
        } else if *name == "personality" || *name == "clone" {
            RET_ALLOW // args all zero: allowed values
        } else {
            EPERM
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn podman_profile() {
    let f = compile(&engine_profile("podman")).expect("compiles");
    let enosys = RET_ERRNO | 38;
    assert_eq!(on64(&f, "mkdir", [0; 6]), RET_ALLOW);
    assert_eq!(on64(&f, "mount", [0; 6]), RET_ALLOW);
    assert_eq!(on64(&f, "sethostname", [0; 6]), EPERM);
    assert_eq!(on64(&f, "kexec_load", [0; 6]), EPERM);
    // Podman's default is ENOSYS already.
    assert_eq!(on64(&f, "add_key", [0; 6]), enosys);
    assert_eq!(on64(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(on64(&f, "personality", [9, 0, 0, 0, 0, 0]), enosys);
}

#[test]
fn x86_64_table_matches_headers() {
    let path = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (install Debian's linux-libc-dev: scripts/install-deps.sh)")
    });
    let mut from_header: Vec<(String, u32)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let mut it = rest.split_whitespace();
            let name = it.next()?.to_string();
            let nr = it.next()?.parse().ok()?;
            Some((name, nr))
        })
        .collect();
    from_header.sort();
    let table: Vec<(String, u32)> = Abi::X86_64
        .table()
        .iter()
        .map(|(n, nr)| (n.to_string(), *nr))
        .collect();
    assert!(from_header.len() > 300);
    assert_eq!(
        table, from_header,
        "regenerate with src/seccomp/gen_tables.py"
    );
    assert!(Abi::X86.table().windows(2).all(|w| w[0].0 < w[1].0));
    assert!(Abi::X32
        .table()
        .iter()
        .all(|(_, nr)| nr & X32_SYSCALL_BIT != 0));
}

#[test]
fn docker_profile_size_and_compile_time() {
    let p = engine_profile("docker");
    let start = std::time::Instant::now();
    let n = 50;
    for _ in 0..n {
        compile(&p).unwrap();
    }
    let per = start.elapsed() / n;
    let len = compile(&p).unwrap().program().len();
    eprintln!("docker profile: {len} instructions, compiled in {per:?}");
    assert!(len < 4096);
}
