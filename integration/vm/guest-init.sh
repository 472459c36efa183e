#!/bin/sh
# PID 1 of the brig test VM (busybox ash), built into the initramfs by
# setup.sh.  run-in-vm.sh appends /etc/brig-vm-job (shares, env, command).
# The host reads "@@BRIG-VM-EXIT=<code>@@" on the serial console as the result.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

finish() {
    echo "@@BRIG-VM-EXIT=$1@@"
    # stty sets the tty attributes with TCSADRAIN: it returns once the UART has
    # sent everything, so the marker is not lost by the reboot below.
    stty -F /dev/console -onlcr 2>/dev/null
    reboot -f   # syncs first; reboot=t + QEMU's -no-reboot end the VM
    sleep 60    # not reached
}
fail() { echo "brig-vm init: ERROR: $*"; finish 125; }

if [ "$1" != stage2 ]; then
    # Stage 1, still on the initramfs ("rootfs").  pivot_root(2) refuses to
    # move rootfs away, and container runtimes need pivot_root, so copy the
    # initramfs into a tmpfs and switch_root into it (which frees the old one).
    mkdir /newroot
    mount -t tmpfs -o mode=0755 root /newroot || fail "tmpfs root"
    for f in /*; do [ "$f" = /newroot ] || cp -a "$f" /newroot/ || fail "copy $f"; done
    exec switch_root /newroot /init stage2
fi

# Stage 2: a normal root filesystem; mount what a systemd host would have.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
ln -s /proc/self/fd /dev/fd   # udev's usual links; devtmpfs lacks them
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
# Pure cgroup v2 (the kernel has cgroup_no_v1=all), every controller
# delegated to children as systemd does, so brig can create cgroups with them.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || echo "brig-vm init: cannot enable controller $c"
done
mount --make-rshared /   # systemd hosts have shared propagation
hostname -F /etc/hostname
ip link set lo up
stty -F /dev/console -onlcr   # plain \n on the console (the host keeps bytes as they come)
while read -r ko; do insmod "$ko" || fail "insmod $ko"; done </etc/modules-load-order

# Used by the job file: mount virtio-9p share number $1 at path $2, mode rw|ro.
share() {
    mkdir -p "$2" && mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,cache=${BRIG_VM_9P_CACHE:-mmap},$3" "share$1" "$2" ||
        fail "cannot mount share $2"
}
[ -f /etc/brig-vm-job ] || fail "no /etc/brig-vm-job in the initramfs"
cd /
# The job's last command runs in a subshell so that its exit code is ours;
# stdin is /dev/null: nothing types into the console.
(. /etc/brig-vm-job) </dev/null
finish $?
