#!/usr/bin/env bash
# Runs containerd, Docker and podman with brig as their runtime, end to end
# (issue 7), on private instances under a temp dir, then checks that nothing
# of brig's is left. Prints "N passed, M failed" and exits non-zero if any
# step failed. As root. See README.md beside this file.
#
# Environment:
#   BRIG=PATH            brig binary (default: build the workspace, use target/debug/brig)
#   ENGINES="containerd docker podman cri"   which engines to run
#   BRIG_ENGINES_TRACE=0 call brig directly instead of through the argv-logging wrapper
#   BRIG_ENGINES_LOGS=DIR where logs go (default /tmp/brig-engines-logs, replaced each run)
#   KEEP=1               keep the temp dir
set -uo pipefail

ENGINES_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$ENGINES_DIR/../.." && pwd)
: "${ENGINES:=containerd docker podman cri}"
: "${BRIG_ENGINES_TRACE:=1}"
: "${BRIG_ENGINES_LOGS:=/tmp/brig-engines-logs}"
LOGS=$BRIG_ENGINES_LOGS
START=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  echo "run-all.sh: needs root" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

rm -rf "$LOGS"
mkdir -p "$LOGS"
# Short paths: unix sockets live here (108-byte limit).
T=$(mktemp -d /tmp/be.XXXX)
RESULTS=$T/results
: >"$RESULTS"
mkdir -p "$T/bin"
PATH=$T/bin:$PATH
export T LOGS RESULTS PATH

# shellcheck source=lib.sh
. "$ENGINES_DIR/lib.sh"
. "$ENGINES_DIR/containerd.sh"
. "$ENGINES_DIR/docker.sh"
. "$ENGINES_DIR/podman.sh"
. "$ENGINES_DIR/cri.sh"

summary() {
  local p f
  p=$(grep -c '^PASS ' "$RESULTS")
  f=$(grep -c '^FAIL ' "$RESULTS")
  echo
  if [ "$f" != 0 ]; then
    echo "failed steps:"
    grep '^FAIL ' "$RESULTS" | sed 's/^FAIL /  /'
    echo "logs: $LOGS (steps.log, engine logs, trace.log = every brig command line)"
  fi
  echo "engines: $(($(date +%s) - START))s"
  echo "$p passed, $f failed"
  [ "$f" = 0 ]
}

final_cleanup() {
  # Whatever an aborted run left of the daemons we started.
  [ -n "${CTD_PID:-}" ] && stop_pid "$CTD_PID" 5
  [ -n "${DOCKERD_PID:-}" ] && stop_pid "$DOCKERD_PID" 5
  [ -n "${CRI_PID:-}" ] && stop_pid "$CRI_PID" 5
  # ... and of their shims, conmons and containers: processes in our cgroup
  # parent, or whose command line names our temp dir. Ours, killed by pid.
  local p
  for p in $(procs_in_cgroup brig-engines) $(grep -l -F "$T/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$p" != $$ ] && [ "$p" != "$BASHPID" ] && kill -KILL "$p" 2>/dev/null
  done
  rm_cgroup_tree brig-engines
  umount_under "$T"
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $T" >&2
  else
    rm -rf "$T"
  fi
}
trap final_cleanup EXIT
trap 'exit 130' INT TERM

# 1. Packages.
if "$ENGINES_DIR/install.sh" >"$LOGS/install.log" 2>&1; then
  pass setup.install
else
  fail setup.install "see $LOGS/install.log"
  summary
  exit 1
fi

# 2. brig.
if [ -z "${BRIG:-}" ]; then
  if (cd "$REPO" && nice -n 10 cargo build --bin brig) >"$LOGS/build.log" 2>&1; then
    BRIG=$REPO/target/debug/brig
  else
    fail setup.build "cargo build failed, see $LOGS/build.log"
    summary
    exit 1
  fi
fi
# The engines call this path; a copy keeps the run immune to rebuilds
# happening meanwhile in the shared target dir.
cp "$BRIG" "$T/brig"
BRIG_REAL=$T/brig
if [ "$BRIG_ENGINES_TRACE" = 1 ]; then
  # Logs each command line (and failures) to trace.log, runs brig.
  RUNTIME=$T/bin/brig
  sed -e "s|@BRIG@|$BRIG_REAL|" -e "s|@TRACE@|$LOGS/trace.log|" "$ENGINES_DIR/trace-wrapper.sh" >"$RUNTIME"
  chmod +x "$RUNTIME"
else
  RUNTIME=$BRIG_REAL
fi
export BRIG_REAL RUNTIME
"$BRIG_REAL" --version >"$LOGS/brig-version.txt" 2>&1 && pass setup.brig-version || fail setup.brig-version "$(cat "$LOGS/brig-version.txt")"

# 3. The image.
IMAGE_TAR=$T/busybox.tar
if "$ENGINES_DIR/make-image.sh" "$IMAGE_TAR" docker.io/library/busybox:brig >"$LOGS/image.log" 2>&1; then
  pass setup.image
else
  fail setup.image "see $LOGS/image.log"
  summary
  exit 1
fi

# What was in brig's default root before (podman uses it; others' tests may too).
BRIG_DEFAULT_ROOT_BEFORE=$(ls -A /run/brig 2>/dev/null | sort)

for e in $ENGINES; do
  "${e}_scenarios"
done

# 4. Nothing of brig's is left.
say "== leftovers"
left=$(brig_processes)
[ -z "$left" ] && pass leftovers.no-brig-process || fail leftovers.no-brig-process "$left"
left=$(procs_in_cgroup brig-engines | tr '\n' ' ')
[ -z "$left" ] && pass leftovers.no-process-in-engine-cgroups || fail leftovers.no-process-in-engine-cgroups "pids $left"
# Container cgroups are removed by brig's delete; the parents (and podman's
# conmon cgroup) belong to the engines' configuration, we remove them.
left=$(cgroup_tree_under brig-engines | grep -Ev '/brig-engines(/(containerd|docker|podman|podman/conmon|cri))?$' | tr '\n' ' ')
[ -z "$left" ] && pass leftovers.no-container-cgroup || fail leftovers.no-container-cgroup "$left"
rm_cgroup_tree brig-engines
left=$(cgroup_dirs brig-engines | tr '\n' ' ')
[ -z "$left" ] && pass leftovers.cgroup-parent-removable || fail leftovers.cgroup-parent-removable "$left"
now=$(ls -A /run/brig 2>/dev/null | sort)
new=$(comm -13 <(printf '%s\n' "$BRIG_DEFAULT_ROOT_BEFORE") <(printf '%s\n' "$now") | grep -v '^$' | tr '\n' ' ')
[ -z "$new" ] && pass leftovers.no-state-in-default-root || fail leftovers.no-state-in-default-root "/run/brig: $new"
# (containerd's runtime root is per namespace, Docker's is runtime-runc/moby
# whatever the runtime.)
left=$(find "$T/ctd/runc" "$T/cri/brig-root" -mindepth 2 2>/dev/null; find "$T/docker/exec/runtime-runc/moby" -mindepth 1 2>/dev/null)
[ -z "$left" ] && pass leftovers.no-state-in-engine-roots || fail leftovers.no-state-in-engine-roots "$(echo $left)"
left=$(mounts_under "$T" | tr '\n' ' ')
[ -z "$left" ] && pass leftovers.no-mount || fail leftovers.no-mount "$left"
umount_under "$T"

summary
