#!/usr/bin/env bash
# Run a command as root in a throwaway QEMU guest whose only cgroup hierarchy is
# cgroup v2 (with all controllers enabled in the root's subtree_control).  Prints
# the guest console and exits with the command's exit code.  Prepare the cache
# once with integration/vm/setup.sh.  See integration/vm/README.md.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: run-in-vm.sh [--share DIR]... [--share-ro DIR]... [--tmpfs DIR]...
                    [--env NAME=VALUE]... [--timeout SECONDS] -- COMMAND [ARG]...
  --share DIR      make host DIR visible read-write at the same path in the guest
                   (virtio 9p); the first share is COMMAND's working directory
  --share-ro DIR   the same, read-only
  --tmpfs DIR      mount an empty tmpfs at DIR in the guest (after the shares), e.g.
                   over target/tmp so guest test runs do not see the host's
  --env NAME=VALUE set an environment variable for COMMAND
  --timeout SECS   kill the VM after SECS (default $BRIG_VM_TIMEOUT or 600); exit 124
Environment: BRIG_VM_CACHE (default /var/cache/brig-vm), BRIG_VM_MEM (MiB, 1024),
  BRIG_VM_SMP (2), BRIG_VM_ACCEL (tcg|kvm, default kvm only with vmx/svm),
  BRIG_VM_9P_CACHE (guest 9p cache mode, default mmap), BRIG_VM_KERNEL_ARGS (extra).
Exit status: COMMAND's; 124 on timeout; 125 when the VM or its init failed.
EOF
}
die() {
    echo "run-in-vm.sh: ERROR: $*" >&2
    exit 125
}

CACHE=${BRIG_VM_CACHE:-/var/cache/brig-vm}
TIMEOUT=${BRIG_VM_TIMEOUT:-600}
share_dirs=() share_modes=() envs=() tmpfs_dirs=()
while [ $# -gt 0 ]; do
    case $1 in
    --share | --share-ro)
        [ $# -ge 2 ] && [ -d "$2" ] || die "$1 needs an existing directory"
        share_dirs+=("$(realpath "$2")")
        if [ "$1" = --share ]; then share_modes+=(rw); else share_modes+=(ro); fi
        shift 2 ;;
    --tmpfs) [ $# -ge 2 ] || die "--tmpfs needs a directory"; tmpfs_dirs+=("$(realpath -m "$2")"); shift 2 ;;
    --env) [ $# -ge 2 ] && [[ $2 == *=* ]] || die "--env needs NAME=VALUE"; envs+=("$2"); shift 2 ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; TIMEOUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }

# Never skip silently: a missing cache or a QEMU that cannot start is an error.
QEMU=$CACHE/qemu/bin/qemu-system-x86_64
export QEMU_MODULE_DIR=$CACHE/qemu/modules   # QEMU is unpacked, not installed
for f in "$QEMU" "$CACHE/vmlinux" "$CACHE/initramfs.cpio" "$CACHE/busybox" "$CACHE/stamp"; do
    [ -e "$f" ] || die "$f missing: run integration/vm/setup.sh first"
done
"$QEMU" --version >/dev/null 2>&1 || die "QEMU cannot run: $("$QEMU" --version 2>&1 | head -3)"

# KVM only with hardware virtualisation: a /dev/kvm without vmx/svm (e.g. a
# PVM backend) cannot run a stock kernel at speed, and TCG can.
ACCEL=${BRIG_VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
    if grep -q -w -E 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
if [ "$ACCEL" = kvm ]; then CPU=host; else CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand; fi

APPEND="console=ttyS0 reboot=t panic=-1 mitigations=off cryptomgr.notests pci=off quiet cgroup_no_v1=all"
if [ "$ACCEL" = tcg ]; then
    # Under TCG the guest TSC ticks at the host's TSC rate, and calibrating it
    # can hang the boot when the host is loaded: pass the rate.  The kernel's
    # own measure (dmesg) is the TSC's; cpuinfo's "cpu MHz" is the fallback.
    tsc_mhz=$(dmesg 2>/dev/null | sed -n -e 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' \
        -e 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -1)
    [ -n "$tsc_mhz" ] || tsc_mhz=$(awk -F: '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
    [ -z "$tsc_mhz" ] || APPEND+=" tsc_early_khz=$(awk -v m="$tsc_mhz" 'BEGIN { printf "%d", m * 1000 }')"
    # TCG's TSC is one global host-TSC-based counter, so it is synchronised,
    # but the guest's slow emulated sync check says otherwise and falls back
    # to jiffies (4 ms clock resolution).  Trust it.
    APPEND+=" tsc=reliable"
fi
APPEND+=" ${BRIG_VM_KERNEL_ARGS:-}"   # e.g. "loglevel=7" to debug the boot

TMP=$(mktemp -d -t brig-vm.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The job file, sourced by the guest init: mount the shares, set env, cd, run.
{
    [ -z "${BRIG_VM_9P_CACHE:-}" ] || printf 'BRIG_VM_9P_CACHE=%q\n' "$BRIG_VM_9P_CACHE"
    for i in "${!share_dirs[@]}"; do
        printf 'share %d %q %s\n' "$i" "${share_dirs[$i]}" "${share_modes[$i]}"
    done
    for d in "${tmpfs_dirs[@]}"; do
        printf 'mkdir -p %q && mount -t tmpfs -o mode=1777 tmpfs %q || exit 125\n' "$d" "$d"
    done
    for e in "${envs[@]}"; do printf 'export %q\n' "$e"; done
    [ ${#share_dirs[@]} -eq 0 ] || printf 'cd %q || exit 125\n' "${share_dirs[0]}"
    printf '%q ' "$@"
    echo
} >"$TMP/job"
mkdir -p "$TMP/j/etc" && mv "$TMP/job" "$TMP/j/etc/brig-vm-job"
# Initrd = cached base archive + this job's archive (the kernel unpacks
# concatenated cpio archives), zero-padded to a whole MiB: an unpadded initrd
# can end up over the ACPI tables, and the boot hangs.
(cd "$TMP/j" && echo etc/brig-vm-job | "$CACHE/busybox" cpio -o -H newc -R 0:0 2>/dev/null) >"$TMP/job.cpio"
cat "$CACHE/initramfs.cpio" "$TMP/job.cpio" >"$TMP/initrd"
size=$(stat -c %s "$TMP/initrd")
truncate -s $(((size + 1048575) / 1048576 * 1048576)) "$TMP/initrd"

# shellcheck disable=SC2054  # the commas are QEMU's, not array separators
qemu_args=(
    -M microvm,accel="$ACCEL" -cpu "$CPU" -smp "${BRIG_VM_SMP:-2}" -m "${BRIG_VM_MEM:-1024}"
    -L "$CACHE/qemu/share" -nodefaults -no-user-config -display none -serial stdio -no-reboot
    -kernel "$CACHE/vmlinux" -initrd "$TMP/initrd" -append "$APPEND"
)
for i in "${!share_dirs[@]}"; do
    ro=; [ "${share_modes[$i]}" = ro ] && ro=,readonly=on
    # security_model=none: guest file operations run with QEMU's (root's)
    # credentials, ownership changes that fail are ignored.
    qemu_args+=(-fsdev "local,id=fs$i,path=${share_dirs[$i]},security_model=none$ro"
        -device "virtio-9p-device,fsdev=fs$i,mount_tag=share$i")
done

# Stream the console to stdout and keep a copy to find the exit marker.
set +e
timeout -k 10 "$TIMEOUT" "$QEMU" "${qemu_args[@]}" </dev/null 2>&1 | tee "$TMP/console"
qemu_rc=${PIPESTATUS[0]}
set -e
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "run-in-vm.sh: ERROR: VM timed out after ${TIMEOUT}s and was killed" >&2
    exit 124
fi
rc=$(sed -n 's/.*@@BRIG-VM-EXIT=\([0-9]*\)@@.*/\1/p' "$TMP/console" | tail -1)
[ -n "$rc" ] || die "VM ended without an exit marker (QEMU status $qemu_rc): boot or guest init failed"
exit "$rc"
