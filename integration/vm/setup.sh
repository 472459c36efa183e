#!/usr/bin/env bash
# Prepare everything integration/vm/run-in-vm.sh needs: a QEMU, a Debian 6.1
# kernel (uncompressed, for a fast PVH boot) and a busybox initramfs whose
# init mounts a pure cgroup v2 hierarchy.  Idempotent: a second call returns at
# once while the cache matches this script and the guest init.
#
# Cache dir: $BRIG_VM_CACHE (default /var/cache/brig-vm).  Needs root (apt,
# mknod).  Only Debian's own packages are used, through apt.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${BRIG_VM_CACHE:-/var/cache/brig-vm}
# Kernel modules the guest loads (their dependencies are added): virtio-mmio
# (microvm's bus) and 9p for the share; overlay and veth for container tests.
MODULES="virtio_mmio 9pnet_virtio 9p overlay veth"
# Host shared libraries copied into the guest at their host paths, so that
# dynamically linked Rust binaries (cargo's test binaries, brig itself) run
# there.  Add more sonames or paths with BRIG_VM_EXTRA_LIBS="libfoo.so.1 ...".
LIBS="ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0
      libdl.so.2 librt.so.1 libutil.so.1 libresolv.so.2 ${BRIG_VM_EXTRA_LIBS:-}"

die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, mknod)"

# The stamp says which inputs built the cache; rebuild when any changes.
STAMP=$( (cat "$0" "$HERE/guest-init.sh"; echo "$LIBS") | sha256sum | cut -c1-16)
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # two concurrent setups must not build into the same dir
# (QEMU must also still start: its libraries are ordinary apt packages.)
if [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$STAMP" ] &&
    QEMU_MODULE_DIR=$CACHE/qemu/modules "$CACHE/qemu/bin/qemu-system-x86_64" --version >/dev/null 2>&1; then
    echo "setup.sh: $CACHE is up to date"
    exit 0
fi
T0=$(date +%s)

# --- 1. apt: index, small host tools, and the libraries QEMU links against.
# QEMU itself is NOT installed with apt: a backports qemu-utils (10.x) may sit
# on the machine and Breaks bookworm's qemu-system-common, so apt would want to
# remove it.  Instead the qemu-system-x86 .deb is unpacked into the cache and
# only its library dependencies are installed (never upgrading or removing).
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed"
KPKG=${BRIG_VM_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 |
    sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)}
[ -n "$KPKG" ] || die "no linux-image-6.1.*-amd64 found via linux-image-amd64"
qemu_deps=$(apt-cache show --no-all-versions qemu-system-x86 | sed -n 's/^Depends: //p' |
    tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' | grep -v -E '^(qemu-|seabios$|ipxe-qemu$)')
missing=()
for p in xz-utils $qemu_deps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: apt-get install ${missing[*]}"
    apt-get install -y -qq --no-remove --no-upgrade --no-install-recommends "${missing[@]}" \
        >/dev/null || die "apt-get install ${missing[*]} failed"
fi

# --- 2. Download and unpack (never install) QEMU, firmware, busybox, kernel.
B=$CACHE/build.tmp
rm -rf "$B" && mkdir -p "$B/debs" "$B/x"
(cd "$B/debs" && apt-get download -q qemu-system-x86 qemu-system-common qemu-system-data seabios \
    busybox-static "$KPKG" >/dev/null 2>&1) || die "apt-get download failed"
for d in "$B"/debs/*.deb; do dpkg -x "$d" "$B/x"; done
X=$B/x
KVER=$(ls "$X/lib/modules")
mkdir -p "$B/qemu/bin" "$B/qemu/modules"
cp "$X/usr/bin/qemu-system-x86_64" "$B/qemu/bin/"
# TCG is a loadable module (run-in-vm.sh sets QEMU_MODULE_DIR to find it).
cp "$X/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so" "$B/qemu/modules/"
cp -a "$X/usr/share/qemu" "$B/qemu/share"   # -L dir: qboot.rom, pvh.bin, ...
cp -a "$X/usr/share/seabios" "$B/qemu/"       # some share/ entries link to ../seabios
"$B/qemu/bin/qemu-system-x86_64" --version >/dev/null ||
    die "unpacked QEMU does not start (missing libraries?)"

# --- 3. vmlinux: the bzImage wraps an xz stream holding the ELF kernel; QEMU
# boots that ELF through its PVH note with no real-mode setup or decompression.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$X/boot/vmlinuz-$KVER" | head -1 | cut -d: -f1)
[ -n "$off" ] || die "no xz stream in vmlinuz-$KVER"
tail -c +$((off + 1)) "$X/boot/vmlinuz-$KVER" | xz -dc --single-stream >"$B/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$B/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] || die "vmlinux extraction failed"

# --- 4. initramfs root.
R=$B/root
mkdir -p "$R"/{dev,proc,sys,tmp,run,root,etc,usr/bin,usr/sbin,usr/lib,usr/lib64}
# Same merged-/usr layout as the host, so library paths resolve the same way.
for d in bin sbin lib lib64; do
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; else mkdir -p "$R/$d"; fi
done
mknod -m 600 "$R/dev/console" c 5 1   # the kernel opens it for init's stdio
cp "$X/bin/busybox" "$R/usr/bin/busybox"
cp "$X/bin/busybox" "$B/busybox"   # run-in-vm.sh packs each job's cpio with it
for a in $("$R/usr/bin/busybox" --list-full); do
    [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /usr/bin/busybox "$R/$a"
done
cp "$HERE/guest-init.sh" "$R/init" && chmod 755 "$R/init"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
echo brig-vm >"$R/etc/hostname"
printf '127.0.0.1 localhost brig-vm\n::1 localhost\n' >"$R/etc/hosts"

# Copy a host file to the same path in the guest; symlinks are kept as
# symlinks and their targets copied too (ld-linux in /lib64 links to /lib/...).
copy_host_file() {
    local p dir
    dir=$(readlink -f "$(dirname "$1")") p="$dir/$(basename "$1")"
    [ -e "$R$p" ] || [ -L "$R$p" ] && return 0
    mkdir -p "$R$dir"
    cp -a "$p" "$R$p"
    if [ -L "$p" ]; then copy_host_file "$(readlink -f "$p")"; fi
}
for l in $LIBS; do
    case $l in
    /*) p=$l ;;
    *) p=$(ldconfig -p | awk -v s="$l" '$1 == s && /x86-64/ { print $NF; exit }') ;;
    esac
    [ -n "$p" ] && [ -e "$p" ] || die "host library $l not found"
    copy_host_file "$p"
done
copy_host_file /lib64/ld-linux-x86-64.so.2   # the ELF interpreter path itself

# Modules, in load order (dependencies first), read from each .ko's modinfo.
MD=$X/lib/modules/$KVER
declare -A ko_path=() added=()
while read -r f; do n=$(basename "$f" .ko); ko_path[${n//-/_}]=$f; done < <(cd "$MD" && find kernel -name '*.ko')
add_module() {
    local m=${1//-/_} d
    [ -z "${added[$m]:-}" ] || return 0
    added[$m]=1
    if [ -z "${ko_path[$m]:-}" ]; then
        grep -q "/$m.ko\$" "$MD/modules.builtin" && return 0   # built in: nothing to load
        die "kernel module $m not found"
    fi
    for d in $(tr '\0' '\n' <"$MD/${ko_path[$m]}" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do
        add_module "$d"
    done
    mkdir -p "$R/lib/modules/$KVER/$(dirname "${ko_path[$m]}")"
    cp "$MD/${ko_path[$m]}" "$R/lib/modules/$KVER/${ko_path[$m]}"
    echo "/lib/modules/$KVER/${ko_path[$m]}" >>"$R/etc/modules-load-order"
}
for m in $MODULES; do add_module "$m"; done

# Uncompressed newc cpio: the kernel unpacks it without a decompressor.
(cd "$R" && find . | "$R/usr/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) >"$B/initramfs.cpio"

# --- 5. Publish: replace the cache contents, then write the stamp last.
rm -f "$CACHE/stamp"
rm -rf "$CACHE/qemu" "$CACHE/vmlinux" "$CACHE/initramfs.cpio" "$CACHE/busybox"
mv "$B/qemu" "$B/vmlinux" "$B/initramfs.cpio" "$B/busybox" "$CACHE/"
echo "$KPKG" >"$CACHE/kernel-package"
rm -rf "$B"
echo "$STAMP" >"$CACHE/stamp"
echo "setup.sh: $CACHE ready (kernel $KPKG, $(($(date +%s) - T0)) s)"
