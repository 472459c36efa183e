//! The container process: identity, environment, credentials, capabilities,
//! limits and exit status, as the process itself reports them.

use crate::harness::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn init_is_pid_1_in_its_pid_namespace() {
    let env = Env::new("pid1");
    let mut b = env.bundle();
    // /proc/1/cmdline shows that pid 1 is this very shell, not a runtime
    // helper; `$$` is the shell's pid in its own pid namespace. (The builtin
    // comes last: busybox sh execs a final external command in place.)
    b.sh("tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$");
    let out = env.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("sh -c tr")),
        "pid 1 is not the user's shell: {out}"
    );
    assert_eq!(lines.get(1), Some(&"1"), "output: {out}");
}

#[test]
fn hostname_and_domainname_are_set_in_a_private_uts_namespace() {
    let env = Env::new("hostname");
    let host_before = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    let mut b = env.bundle();
    b.set("/hostname", json!("brig-box"));
    b.set("/domainname", json!("brig.example"));
    b.sh("hostname; cat /proc/sys/kernel/domainname");
    let out = env.run_ok(&b);
    assert_eq!(out, "brig-box\nbrig.example\n");
    let host_after = fs::read_to_string("/proc/sys/kernel/hostname").expect("host hostname");
    assert_eq!(host_before, host_after, "the host's hostname changed");
}

#[test]
fn env_is_exactly_the_configured_environment() {
    let env = Env::new("env");
    let mut b = env.bundle();
    b.env(&["PATH=/usr/bin:/bin", "GREETING=hello world", "EMPTY="]);
    b.args(&["env"]);
    let out = env.run_ok(&b);
    let mut got: Vec<&str> = out.lines().collect();
    // runc adds HOME from /etc/passwd when config.json has none; allow exactly that.
    if let Some(i) = got.iter().position(|l| l.starts_with("HOME=")) {
        assert_eq!(
            got[i], "HOME=/root",
            "HOME does not come from /etc/passwd: {out}"
        );
        got.remove(i);
    }
    got.sort();
    let tag = format!("{TAG_VAR}={}", env.tag);
    let mut want = vec![
        "EMPTY=",
        "GREETING=hello world",
        "PATH=/usr/bin:/bin",
        tag.as_str(),
    ];
    want.sort();
    // Anything else (brig's own variables, the test's) would be a leak from the runtime's environment.
    assert_eq!(got, want, "container environment:\n{out}");
}

#[test]
fn cwd_is_the_configured_directory() {
    let env = Env::new("cwd");
    let mut b = env.bundle();
    b.set("/process/cwd", json!("/usr/bin"));
    b.sh("pwd -P; readlink /proc/self/cwd");
    assert_eq!(env.run_ok(&b), "/usr/bin\n/usr/bin\n");
}

#[test]
fn args0_is_looked_up_in_the_containers_path() {
    let env = Env::new("pathlookup");
    // A command that exists only in the rootfs, in a directory the host
    // does not have, proves the lookup happens inside the container.
    let mut b = env.bundle_with_private_rootfs();
    let tools = b.rootfs.join("opt/tools");
    fs::create_dir_all(&tools).expect("mkdir opt/tools");
    fs::write(tools.join("brig-hello"), "#!/bin/sh\necho hello from $0\n")
        .expect("write brig-hello");
    fs::set_permissions(tools.join("brig-hello"), fs::Permissions::from_mode(0o755))
        .expect("chmod brig-hello");
    b.env(&["PATH=/nonexistent:/opt/tools:/bin"]);
    b.args(&["brig-hello"]);
    assert_eq!(env.run_ok(&b), "hello from /opt/tools/brig-hello\n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let env = Env::new("user");
    let mut b = env.bundle();
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000]}),
    );
    b.sh("id -un; id -u; id -g; cat /proc/$$/status");
    let out = env.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.get(..3),
        Some(&["tester", "1000", "1000"][..]),
        "output: {out}"
    );
    let ids = |f| status_field(&out, f).split_whitespace().collect::<Vec<_>>();
    assert_eq!(ids("Uid"), ["1000"; 4], "real, effective, saved, fs uid");
    assert_eq!(ids("Gid"), ["1000"; 4], "real, effective, saved, fs gid");
    let mut groups = ids("Groups");
    groups.sort();
    assert_eq!(
        groups,
        ["10", "2000"],
        "supplementary groups are exactly additionalGids"
    );
}

#[test]
fn umask_comes_from_config_or_defaults_to_0022() {
    let env = Env::new("umask");
    let mut b = env.bundle();
    b.tmpfs("/tmp", &["nosuid", "nodev"]);
    b.set("/process/user/umask", json!(0o027));
    b.sh("umask; touch /tmp/f; stat -c %a /tmp/f");
    // brig itself runs with umask 077 so that an inherited umask is told apart.
    b.write();
    let id = env.id();
    let out = env
        .brig()
        .umask(0o077)
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    assert_eq!(out.stdout, "0027\n640\n");

    b.remove("/process/user/umask");
    b.write();
    let id = env.id();
    let out = env
        .brig()
        .umask(0o077)
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .run()
        .ok();
    assert_eq!(out.stdout, "0022\n644\n", "runc's default umask is 0022");
}

/// Reads the shell's own capability sets.
fn caps_of(env: &Env, b: &mut Bundle) -> String {
    b.sh("cat /proc/$$/status");
    env.run_ok(b)
}

#[test]
fn root_capability_sets_match_the_config() {
    let env = Env::new("caps-root");
    let mut b = env.bundle();
    let set = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
    ];
    // For uid 0 the kernel recomputes permitted as bounding|inheritable on
    // execve, so only equal bounding/effective/permitted sets survive exec
    // unchanged (runc behaves the same; Docker always sends them equal).
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    let status = caps_of(&env, &mut b);
    let want = cap_mask(&set);
    assert_eq!(cap_field(&status, "CapBnd"), want, "CapBnd");
    assert_eq!(cap_field(&status, "CapPrm"), want, "CapPrm");
    assert_eq!(cap_field(&status, "CapEff"), want, "CapEff");
    // CVE-2022-29162: nothing inheritable unless config.json asks.
    assert_eq!(cap_field(&status, "CapInh"), 0, "CapInh");
    assert_eq!(cap_field(&status, "CapAmb"), 0, "CapAmb");
}

#[test]
fn non_root_keeps_inheritable_and_ambient_capabilities() {
    let env = Env::new("caps-user");
    let mut b = env.bundle();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let nbs = ["CAP_NET_BIND_SERVICE"];
    let bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    // A non-root process keeps across execve only its ambient set (busybox
    // has no file capabilities), so all five sets are visible only this way.
    b.set(
        "/process/capabilities",
        json!({"bounding": bounding, "effective": nbs, "permitted": nbs,
               "inheritable": nbs, "ambient": nbs}),
    );
    let status = caps_of(&env, &mut b);
    assert_eq!(cap_field(&status, "CapBnd"), cap_mask(&bounding), "CapBnd");
    for f in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(cap_field(&status, f), cap_mask(&nbs), "{f}");
    }
}

#[test]
fn no_inheritable_capability_unless_asked() {
    let env = Env::new("caps-inh");
    let mut b = env.bundle();
    // brig spec's own default capabilities, minus any inheritable/ambient lists.
    b.remove("/process/capabilities/inheritable");
    b.remove("/process/capabilities/ambient");
    let bounding: Vec<String> = b
        .get("/process/capabilities/bounding")
        .as_array()
        .expect("brig spec sets a bounding set")
        .iter()
        .map(|v| v.as_str().expect("capability name").to_string())
        .collect();
    let status = caps_of(&env, &mut b);
    assert_eq!(cap_field(&status, "CapBnd"), cap_mask(&bounding), "CapBnd");
    assert_eq!(cap_field(&status, "CapInh"), 0, "CapInh");
    assert_eq!(cap_field(&status, "CapAmb"), 0, "CapAmb");
}

#[test]
fn rlimits_are_applied() {
    let env = Env::new("rlimits");
    let mut b = env.bundle();
    // Only lowered: the sandbox has no CAP_SYS_RESOURCE to raise a hard limit.
    b.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 64, "hard": 128},
            {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192}
        ]),
    );
    b.sh("cat /proc/$$/limits");
    let out = env.run_ok(&b);
    assert_eq!(limit(&out, "Max open files"), ("64".into(), "128".into()));
    assert_eq!(
        limit(&out, "Max core file size"),
        ("4096".into(), "8192".into())
    );
}

#[test]
fn no_new_privileges_follows_the_config() {
    let env = Env::new("nnp");
    for (flag, want) in [(true, "1"), (false, "0")] {
        let mut b = env.bundle();
        b.set("/process/noNewPrivileges", json!(flag));
        b.sh("cat /proc/$$/status");
        let out = env.run_ok(&b);
        assert_eq!(
            status_field(&out, "NoNewPrivs"),
            want,
            "noNewPrivileges {flag}"
        );
    }
}

#[test]
fn oom_score_adj_is_applied() {
    let env = Env::new("oom");
    let mut b = env.bundle();
    // Raising needs no privilege (lowering would need CAP_SYS_RESOURCE).
    b.set("/process/oomScoreAdj", json!(500));
    b.sh("cat /proc/$$/oom_score_adj");
    assert_eq!(env.run_ok(&b), "500\n");
}

#[test]
fn sysctls_are_set_inside_the_container_only() {
    let env = Env::new("sysctl");
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host ip_forward");
    let host_msgmax = fs::read_to_string("/proc/sys/kernel/msgmax").expect("host msgmax");
    let mut b = env.bundle();
    // Both are namespaced (network and ipc), so the host must not change.
    let fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": fwd, "kernel.msgmax": "4321"}),
    );
    b.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax");
    assert_eq!(env.run_ok(&b), format!("{fwd}\n4321\n"));
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/msgmax").unwrap(),
        host_msgmax
    );
}

#[test]
fn run_exits_with_the_process_exit_code() {
    let env = Env::new("exitcode");
    for code in [0, 1, 42] {
        let mut b = env.bundle();
        b.sh(&format!("exit {code}"));
        let out = env.run(&b);
        assert_eq!(out.code(), Some(code), "{out}");
    }
}

#[test]
fn run_exits_128_plus_n_when_the_process_dies_of_signal_n() {
    let env = Env::new("sigdeath");
    let mut b = env.bundle();
    // Without a pid namespace the shell is not an init, so it can die of a
    // signal it sends itself (an init ignores signals it has no handler for).
    b.remove_namespace("pid");
    b.sh("kill -USR1 $$; sleep 5");
    let out = env.run(&b);
    assert_eq!(out.code(), Some(128 + libc::SIGUSR1), "{out}");
}
