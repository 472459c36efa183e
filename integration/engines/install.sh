#!/usr/bin/env bash
# Installs the engines from Debian's packages, only what is missing.
# No recommends: docker.io would pull cgroupfs-mount (which mounts cgroup
# hierarchies) and needrestart; podman would pull buildah, criu and more.
# Services are never started by the packages (policy-rc.d, no systemd).
set -euo pipefail

# command -> package
declare -A want=(
  [/usr/bin/containerd]=containerd
  [/usr/bin/ctr]=containerd
  [/usr/sbin/dockerd]=docker.io
  [/usr/bin/docker]=docker.io
  [/usr/bin/podman]=podman
  [/usr/bin/conmon]=conmon
  [/bin/busybox]=busybox-static
  [/usr/bin/script]=bsdutils
)
# cri-client.py (no crictl in Debian 12)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
need=()
for f in "${!want[@]}"; do
  [ -x "$f" ] || need+=("${want[$f]}")
done
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

export DEBIAN_FRONTEND=noninteractive
# No service may start while installing: docker.io's postinst would start a
# dockerd with a bridge and iptables rules.
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt_opts=(-o DPkg::Lock::Timeout=600 -y -qq --no-remove --no-install-recommends)
echo "engines: installing ${need[*]}" >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get install "${apt_opts[@]}" "${need[@]}" >/dev/null
