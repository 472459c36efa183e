#!/usr/bin/env bash
# brig against runc and crun, side by side. `bench/run.sh` writes
# bench/RESULTS.md; `bench/run.sh --short` (CI) runs a few iterations and
# only prints the table, so the benchmark never rots.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in runc crun; do command -v "$pkg" >/dev/null || need+=("$pkg"); done
# perf samples the runtimes' CPU time (rusage cannot split it on this kernel).
command -v perf >/dev/null || need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-remove "${need[@]}" >/dev/null
fi
# The binary as shipped: static, non-PIE (no dynamic loader and no
# relocation work at every call; see scripts/build-release.sh).
brig=$(scripts/build-release.sh)

args=(--brig "$brig" --iterations 30 --parallel 50 --out bench/RESULTS.md)
if [ "${1:-}" = --short ]; then
  args=(--brig "$brig" --iterations 3 --parallel 10 --skip-memory --out /tmp/brig-bench-short.md)
fi

# crun 1.8 refuses hybrid cgroups ("cgroups in hybrid mode not supported"):
# in a private mount namespace, a tmpfs hides the cgroup2 mount from all
# three runtimes alike; the host's mounts are untouched. crun still makes a
# directory there per container and leaves it: the tmpfs must have room for
# thousands (a 64 KiB one filled up and failed crun's later containers).
exec unshare --mount --propagation private -- sh -c '
  if [ -d /sys/fs/cgroup/unified ] && grep -q " /sys/fs/cgroup/unified cgroup2 " /proc/self/mounts; then
    mount -t tmpfs -o size=64m brig-bench /sys/fs/cgroup/unified
  fi
  exec python3 bench/bench.py "$@"' sh "${args[@]}"
