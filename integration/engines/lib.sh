# Shared helpers for the engine scenarios (sourced, not run).
#
# Every check records one line "PASS name" or "FAIL name: why" in $RESULTS;
# run-all.sh counts them. A command's full output goes to $LOGS/steps.log.

: "${ENGINES_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
: "${STEP_TIMEOUT:=60}"
# Lines of output matching this extended regex are dropped before checks
# (e.g. dockerd's warning that IPv4 forwarding is off, which we asked for).
OUT_FILTER=

log() { printf '%s %s\n' "$(date +%T)" "$*" >>"$LOGS/steps.log"; }
say() { printf '%s\n' "$*"; log "$*"; }

pass() {
  echo "PASS $1" >>"$RESULTS"
  printf '  ok    %s\n' "$1"
  log "PASS $1"
}

fail() {
  local name=$1
  shift
  echo "FAIL $name: $*" >>"$RESULTS"
  printf '  FAIL  %s: %s\n' "$name" "$*"
  log "FAIL $name: $*"
}

# run CMD...: runs with a timeout, stdin from /dev/null unless redirected by
# the caller; sets OUT (stdout+stderr, CRs removed, trailing blanks trimmed)
# and RC.
run() {
  log "\$ $*"
  local f
  f=$(mktemp "$T/out.XXXXXX")
  timeout -k 5 "$STEP_TIMEOUT" "$@" >"$f" 2>&1
  RC=$?
  OUT=$(tr -d '\r' <"$f" | { if [ -n "$OUT_FILTER" ]; then grep -Ev -- "$OUT_FILTER"; else cat; fi; })
  rm -f "$f"
  log "rc=$RC"
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/    | /' >>"$LOGS/steps.log"
  return 0
}

# run_in INPUT CMD...: like run, with INPUT on stdin.
run_in() {
  local input=$1
  shift
  log "\$ (stdin: $input) $*"
  local f
  f=$(mktemp "$T/out.XXXXXX")
  printf '%s\n' "$input" | timeout -k 5 "$STEP_TIMEOUT" "$@" >"$f" 2>&1
  RC=$?
  OUT=$(tr -d '\r' <"$f" | { if [ -n "$OUT_FILTER" ]; then grep -Ev -- "$OUT_FILTER"; else cat; fi; })
  rm -f "$f"
  log "rc=$RC"
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/    | /' >>"$LOGS/steps.log"
  return 0
}

# run_tty CMD...: runs CMD with a pty as its terminal (script(1)), so that
# clients' -t works; sets OUT and RC like run.
run_tty() {
  local cmd
  cmd=$(printf '%q ' "$@")
  log "\$ (pty) $cmd"
  local f
  f=$(mktemp "$T/out.XXXXXX")
  timeout -k 5 "$STEP_TIMEOUT" script -qefc "$cmd" /dev/null </dev/null >"$f" 2>&1
  RC=$?
  OUT=$(tr -d '\r' <"$f" | { if [ -n "$OUT_FILTER" ]; then grep -Ev -- "$OUT_FILTER"; else cat; fi; })
  rm -f "$f"
  log "rc=$RC"
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/    | /' >>"$LOGS/steps.log"
  return 0
}

short() { printf '%s' "$1" | tr '\n' '|' | cut -c1-300; }

# expect NAME RC EXPECTED_OUTPUT: the last run gave exactly this.
expect() {
  local name=$1 rc=$2 want=$3
  if [ "$RC" = "$rc" ] && [ "$OUT" = "$want" ]; then
    pass "$name"
  else
    fail "$name" "want rc=$rc out='$(short "$want")', got rc=$RC out='$(short "$OUT")'"
  fi
}

# expect_re NAME RC REGEX: the last run exited RC and its output matches the
# extended regex (grep -E, any line).
expect_re() {
  local name=$1 rc=$2 re=$3
  if [ "$RC" = "$rc" ] && printf '%s\n' "$OUT" | grep -Eq -- "$re"; then
    pass "$name"
  else
    fail "$name" "want rc=$rc out~/$re/, got rc=$RC out='$(short "$OUT")'"
  fi
}

# expect_rc NAME RC: only the exit code matters.
expect_rc() {
  local name=$1 rc=$2
  if [ "$RC" = "$rc" ]; then
    pass "$name"
  else
    fail "$name" "want rc=$rc, got rc=$RC out='$(short "$OUT")'"
  fi
}

# check NAME CONDITION-COMMAND... : pass when the command succeeds.
check() {
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    pass "$name"
  else
    fail "$name" "check failed: $*"
  fi
}

# wait_for SECONDS CMD...: polls until CMD succeeds.
wait_for() {
  local secs=$1
  shift
  local i
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# wait_socket PID PATH SECONDS: the daemon PID is alive and PATH is a socket.
wait_socket() {
  local pid=$1 path=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [ -S "$path" ] && return 0
    sleep 0.1
  done
  return 1
}

# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL. Only our own daemons.
stop_pid() {
  local pid=$1 secs=${2:-20} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

# umount_under DIR: unmounts everything mounted at or below DIR, deepest
# first (what an engine left behind).
umount_under() {
  local dir=$1 m
  for _ in 1 2 3; do
    local left=0
    while read -r m; do
      left=1
      log "umount $m"
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ $left = 0 ] && return 0
  done
}

mounts_under() {
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo
}

# Processes whose executable is brig (the runtime or a container init that
# never exec'd), excluding nothing: at the end there must be none of ours.
brig_processes() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in
    "$BRIG_REAL" | "$BRIG_REAL (deleted)") echo "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" ;;
    esac
  done
}

# The cgroup v1 hierarchies and the unified one, as mounted here.
cgroup_roots() {
  awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo | sort -u
}

# cgroup_dirs REL: every directory named REL (relative to a hierarchy root)
# that exists, in any hierarchy.
cgroup_dirs() {
  local rel=$1 r
  for r in $(cgroup_roots); do
    [ -d "$r/$rel" ] && echo "$r/$rel"
  done
}

# cgroup_tree_under REL: every directory below REL, deepest first.
cgroup_tree_under() {
  local d
  for d in $(cgroup_dirs "$1"); do
    find "$d" -mindepth 1 -type d 2>/dev/null
  done | awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}

# rm_cgroup_tree REL: removes REL and what is below it, if empty of tasks.
rm_cgroup_tree() {
  local d
  for d in $(cgroup_tree_under "$1"); do rmdir "$d" 2>/dev/null; done
  for d in $(cgroup_dirs "$1"); do rmdir "$d" 2>/dev/null; done
  return 0
}

# procs_in_cgroup REL: pids in any hierarchy's REL subtree.
procs_in_cgroup() {
  local d
  for d in $(cgroup_dirs "$1"); do
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}
