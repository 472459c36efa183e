#!/usr/bin/env bash
# Installs what brig's tests and demo need on a fresh Debian 12 machine.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
[ -x /bin/busybox ] || need+=(busybox-static)
# Kernel uapi headers: the seccomp syscall tables are checked against them.
[ -f /usr/include/x86_64-linux-gnu/asm/unistd_64.h ] || need+=(linux-libc-dev)

for extra in brig-unpack/scripts/install-test-deps.sh; do
  [ -f "$extra" ] && bash "$extra"
done

if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-remove "${need[@]}" >/dev/null
fi
