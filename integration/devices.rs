//! /dev inside the container: the default devices, their links, and
//! `linux.devices` entries.

use crate::harness::*;
use serde_json::json;

#[test]
fn default_devices_exist_with_their_numbers() {
    let env = Env::new("devices");
    let mut b = env.bundle();
    b.sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done
         for l in ptmx fd stdin stdout stderr; do echo \"$l -> $(readlink /dev/$l)\"; done
         stat -c '%n %F %t:%T' /dev/pts/ptmx
         echo hello > /dev/null && echo null-writable
         head -c 4 /dev/zero | od -An -tx1 | tr -d ' '",
    );
    let out = env.run_ok(&b);
    let want = "\
/dev/null character special file 1:3 666
/dev/zero character special file 1:5 666
/dev/full character special file 1:7 666
/dev/random character special file 1:8 666
/dev/urandom character special file 1:9 666
/dev/tty character special file 5:0 666
ptmx -> pts/ptmx
fd -> /proc/self/fd
stdin -> /proc/self/fd/0
stdout -> /proc/self/fd/1
stderr -> /proc/self/fd/2
/dev/pts/ptmx character special file 5:2
null-writable
00000000
";
    assert_eq!(out, want);
}

#[test]
fn linux_devices_are_created_with_mode_and_owner() {
    let env = Env::new("linuxdev");
    let mut b = env.bundle();
    b.set(
        "/linux/devices",
        json!([
            {"path": "/dev/brig-null", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o640, "uid": 1000, "gid": 1000},
            {"path": "/dev/sub/brig-zero", "type": "c", "major": 1, "minor": 5,
             "fileMode": 0o600, "uid": 0, "gid": 0}
        ]),
    );
    b.sh(
        "stat -c '%n %F %t:%T %a %u:%g' /dev/brig-null /dev/sub/brig-zero
         echo data > /dev/sub/brig-zero && echo usable",
    );
    assert_eq!(
        env.run_ok(&b),
        "/dev/brig-null character special file 1:3 640 1000:1000\n\
         /dev/sub/brig-zero character special file 1:5 600 0:0\n\
         usable\n"
    );
}

#[test]
fn linux_devices_can_be_fifos() {
    let env = Env::new("fifodev");
    let mut b = env.bundle();
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/brig-fifo", "type": "p", "fileMode": 0o600}]),
    );
    b.sh("stat -c '%n %F %a' /dev/brig-fifo");
    assert_eq!(env.run_ok(&b), "/dev/brig-fifo fifo 600\n");
}
