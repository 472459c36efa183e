# containerd 1.6 (Debian's package) with brig as the runc binary, driven by
# ctr. Sourced by run-all.sh, which sets T, LOGS, RESULTS, RUNTIME, IMAGE_TAR.

CTD_DIR=$T/ctd
CTD_SOCK=$T/ctd.sock
CTD_NS=brig-engines
CTD_IMG=docker.io/library/busybox:brig
CTD_CGROUP=brig-engines/containerd
CTD_RUNC_ROOT=$CTD_DIR/runc
CTD_PID=

# Commands (not functions: timeout and script run them):
#   ctr_ ARGS        ctr against our instance and namespace
#   ctr_run ID ARGS  `ctr run` with brig as the runtime, a private runtime
#                    root, FIFOs under the temp dir and a cgroup of our own
containerd_wrappers() {
  mkdir -p "$T/bin"
  printf '#!/bin/sh\nexec ctr -a "%s" -n "%s" "$@"\n' "$CTD_SOCK" "$CTD_NS" >"$T/bin/ctr_"
  printf '#!/bin/sh\nid=$1\nshift\nexec ctr -a "%s" -n "%s" run --runc-binary "%s" --runc-root "%s" --fifo-dir "%s" --cgroup "/%s/$id" "$@"\n' \
    "$CTD_SOCK" "$CTD_NS" "$RUNTIME" "$CTD_RUNC_ROOT" "$CTD_DIR/fifo" "$CTD_CGROUP" >"$T/bin/ctr_run"
  chmod +x "$T/bin/ctr_" "$T/bin/ctr_run"
}

containerd_start() {
  containerd_wrappers
  mkdir -p "$CTD_DIR/fifo"
  cat >"$CTD_DIR/config.toml" <<EOF
version = 2
root = "$CTD_DIR/root"
state = "$CTD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = "$CTD_SOCK.ttrpc"
[debug]
  level = "debug"
EOF
  containerd --config "$CTD_DIR/config.toml" >"$LOGS/containerd.log" 2>&1 &
  CTD_PID=$!
  echo "$CTD_PID" >"$T/containerd.pid"
  wait_socket "$CTD_PID" "$CTD_SOCK" 30
}

containerd_stop() {
  # Whatever a failed step left: kill and remove every task and container.
  local id
  for id in $(ctr_ task ls -q 2>/dev/null); do
    ctr_ task kill -a -s SIGKILL "$id" >/dev/null 2>&1
    wait_for 5 sh -c "! ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | grep -q '^$id .*RUNNING'"
    ctr_ task rm -f "$id" >/dev/null 2>&1
  done
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers rm "$id" >/dev/null 2>&1
  done
  stop_pid "$CTD_PID" 20
  umount_under "$CTD_DIR"
}

# ctd_status ID: the task's status word (RUNNING, PAUSED, STOPPED...).
ctd_status() { ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
ctd_pid() { ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }

containerd_scenarios() {
  say "== containerd $(containerd --version | awk '{print $3}') (ctr) with brig"
  if ! containerd_start; then
    fail containerd.start "containerd did not come up (see $LOGS/containerd.log)"
    return
  fi
  pass containerd.start

  run ctr_ images import "$IMAGE_TAR"
  expect_re containerd.image-import 0 "unpacking $CTD_IMG"

  # Foreground runs: true, output, exit codes.
  run ctr_run c-true --rm "$CTD_IMG" c-true true
  expect containerd.run-true 0 ""
  run ctr_run c-echo --rm "$CTD_IMG" c-echo echo hello from brig
  expect containerd.run-echo 0 "hello from brig"
  run ctr_run c-exit --rm "$CTD_IMG" c-exit sh -c 'exit 3'
  expect_rc containerd.run-exit-code-3 3
  run ctr_run c-false --rm "$CTD_IMG" c-false false
  expect_rc containerd.run-false-exit-1 1
  run ctr_run c-env --rm --env FOO=bar "$CTD_IMG" c-env sh -c 'echo $FOO $(id -u) $PWD $HOME'
  expect containerd.run-env-user-cwd 0 "bar 0 / /root"

  # A terminal: the client needs one (script gives it a pty).
  run_tty ctr_run c-tty --rm -t "$CTD_IMG" c-tty sh -c 'test -t 0 && test -t 1 && echo tty-ok; tty; exit 4'
  # (script echoes the client's NUL as ^@ at the start: match line ends)
  if [ "$RC" = 4 ] && printf '%s\n' "$OUT" | grep -q 'tty-ok$' && printf '%s\n' "$OUT" | grep -Eq '/dev/(pts/[0-9]+|console)$'; then
    pass containerd.run-tty
  else
    fail containerd.run-tty "want rc=4 and tty-ok and a pts, got rc=$RC out='$(short "$OUT")'"
  fi

  # Detached task with exec, ps, metrics, pause/resume.
  local id=c-detached
  run ctr_run $id -d --memory-limit 67108864 "$CTD_IMG" $id sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  expect_rc containerd.run-detached 0
  wait_for 5 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = RUNNING ]"
  if [ "$(ctd_status $id)" = RUNNING ]; then pass containerd.detached-running; else fail containerd.detached-running "status '$(ctd_status $id)'"; fi
  local init_pid
  init_pid=$(ctd_pid $id)

  run ctr_ task exec --fifo-dir "$CTD_DIR/fifo" --exec-id e-echo $id echo exec-out
  expect containerd.exec-echo 0 "exec-out"
  run ctr_ task exec --fifo-dir "$CTD_DIR/fifo" --exec-id e-exit $id sh -c 'exit 7'
  expect_rc containerd.exec-exit-code-7 7
  # ctr's spec mounts no cgroupfs inside: read the limit on the cgroup that
  # /proc/self/cgroup names from inside.
  run ctr_ task exec --fifo-dir "$CTD_DIR/fifo" --exec-id e-mem $id sh -c 'grep ":memory:" /proc/self/cgroup'
  local mcg lim
  mcg=${OUT##*:memory:}
  lim=$(cat "/sys/fs/cgroup/memory$mcg/memory.limit_in_bytes" 2>/dev/null)
  if [ "$RC" = 0 ] && [ "$mcg" = "/$CTD_CGROUP/$id" ] && [ "$lim" = 67108864 ]; then
    pass containerd.memory-limit-applied
  else
    fail containerd.memory-limit-applied "want cgroup /$CTD_CGROUP/$id with limit 67108864, got rc=$RC cgroup='$mcg' limit='$lim'"
  fi
  run_tty ctr_ task exec --fifo-dir "$CTD_DIR/fifo" -t --exec-id e-tty $id sh -c 'test -t 0 && echo tty-ok; exit 6'
  expect_re containerd.exec-tty 6 '^tty-ok$'
  run ctr_ task exec --fifo-dir "$CTD_DIR/fifo" --exec-id e-missing $id /no/such/binary
  if [ "$RC" != 0 ] && printf '%s' "$OUT" | grep -qi 'no such file or directory'; then
    pass containerd.exec-missing-binary-error
  else
    fail containerd.exec-missing-binary-error "want an error naming 'no such file or directory', got rc=$RC out='$(short "$OUT")'"
  fi

  run ctr_ task ps $id
  expect_re containerd.task-ps 0 "^${init_pid}[[:space:]]"

  run ctr_ task metrics $id
  if [ "$RC" = 0 ] && printf '%s\n' "$OUT" | grep -Eq '^memory.limit_in_bytes[[:space:]]+67108864' &&
    printf '%s\n' "$OUT" | grep -Eq '^pids.current[[:space:]]+[1-9]'; then
    pass containerd.task-metrics
  else
    fail containerd.task-metrics "want memory.limit_in_bytes 67108864 and pids.current>0, got rc=$RC out='$(short "$OUT")'"
  fi

  run ctr_ task pause $id
  local st fz
  st=$(ctd_status $id)
  fz=$(cat /sys/fs/cgroup/freezer/$CTD_CGROUP/$id/freezer.state 2>/dev/null || cat /sys/fs/cgroup/unified/$CTD_CGROUP/$id/cgroup.freeze 2>/dev/null)
  if [ "$RC" = 0 ] && [ "$st" = PAUSED ] && { [ "$fz" = FROZEN ] || [ "$fz" = 1 ]; }; then
    pass containerd.task-pause
  else
    fail containerd.task-pause "rc=$RC status=$st freezer=$fz out='$(short "$OUT")'"
  fi
  run ctr_ task resume $id
  st=$(ctd_status $id)
  if [ "$RC" = 0 ] && [ "$st" = RUNNING ]; then pass containerd.task-resume; else fail containerd.task-resume "rc=$RC status=$st out='$(short "$OUT")'"; fi
  run ctr_ task exec --fifo-dir "$CTD_DIR/fifo" --exec-id e-after $id echo after-resume
  expect containerd.exec-after-resume 0 "after-resume"

  # Default kill (SIGTERM): the init's trap exits 0.
  run ctr_ task kill $id
  wait_for 10 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = STOPPED ]"
  st=$(ctd_status $id)
  if [ "$RC" = 0 ] && [ "$st" = STOPPED ]; then pass containerd.task-kill-term; else fail containerd.task-kill-term "rc=$RC status=$st"; fi
  run ctr_ task rm $id
  expect_rc containerd.task-rm 0
  run ctr_ containers rm $id
  expect_rc containerd.container-rm 0
  check containerd.no-runtime-state-after-rm test ! -e "$CTD_RUNC_ROOT/$CTD_NS/$id"
  check containerd.no-cgroup-after-rm test -z "$(cgroup_dirs "$CTD_CGROUP/$id")"

  # kill -s SIGKILL of an init that ignores SIGTERM.
  id=c-sigkill
  run ctr_run $id -d "$CTD_IMG" $id sleep 600
  wait_for 5 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = RUNNING ]"
  run ctr_ task kill -s SIGKILL $id
  wait_for 10 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = STOPPED ]"
  st=$(ctd_status $id)
  if [ "$RC" = 0 ] && [ "$st" = STOPPED ]; then pass containerd.task-kill-sigkill; else fail containerd.task-kill-sigkill "rc=$RC status=$st"; fi
  run ctr_ task rm $id
  expect_rc containerd.task-rm-after-sigkill 0
  ctr_ containers rm $id >/dev/null 2>&1

  # kill --all: a second, exec'd process dies with the init.
  id=c-killall
  run ctr_run $id -d "$CTD_IMG" $id sleep 600
  wait_for 5 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = RUNNING ]"
  ctr_ task exec --fifo-dir "$CTD_DIR/fifo" -d --exec-id e-bg $id sleep 700 >/dev/null 2>&1
  sleep 0.3
  local nprocs
  nprocs=$(procs_in_cgroup "$CTD_CGROUP/$id" | wc -l)
  run ctr_ task kill -a -s SIGKILL $id
  wait_for 10 sh -c "[ \"\$(ctr -a '$CTD_SOCK' -n '$CTD_NS' task ls | awk '\$1==\"$id\"{print \$3}')\" = STOPPED ]"
  wait_for 5 sh -c "[ -z \"\$(find /sys/fs/cgroup/pids/$CTD_CGROUP/$id -name cgroup.procs -exec cat {} + 2>/dev/null)\" ]"
  st=$(ctd_status $id)
  local left
  left=$(procs_in_cgroup "$CTD_CGROUP/$id" | wc -l)
  if [ "$RC" = 0 ] && [ "$nprocs" -ge 2 ] && [ "$st" = STOPPED ] && [ "$left" = 0 ]; then
    pass containerd.task-kill-all
  else
    fail containerd.task-kill-all "rc=$RC procs-before=$nprocs status=$st procs-left=$left out='$(short "$OUT")'"
  fi
  run ctr_ task rm $id
  expect_rc containerd.task-rm-after-kill-all 0
  ctr_ containers rm $id >/dev/null 2>&1

  # A failing create: the shim reports brig's last error line.
  run ctr_run c-bad --rm "$CTD_IMG" c-bad /no/such/binary
  if [ "$RC" != 0 ] && printf '%s' "$OUT" | grep -q 'no such file or directory' && ! printf '%s' "$OUT" | grep -q 'unable to retrieve OCI runtime error'; then
    pass containerd.run-missing-binary-error
  else
    fail containerd.run-missing-binary-error "want brig's error text with 'no such file or directory', got rc=$RC out='$(short "$OUT")'"
  fi
  ctr_ task rm -f c-bad >/dev/null 2>&1
  ctr_ containers rm c-bad >/dev/null 2>&1

  run ctr_ containers ls -q
  expect containerd.nothing-left-in-containerd 0 ""
  check containerd.runtime-root-empty sh -c "[ -z \"\$(ls -A '$CTD_RUNC_ROOT/$CTD_NS' 2>/dev/null)\" ]"

  containerd_stop
  check containerd.stopped sh -c "! kill -0 $CTD_PID 2>/dev/null"
}
