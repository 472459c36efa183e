# podman 4.3 with conmon 2.1 (Debian's packages), `podman --runtime BRIG`.
# Sourced by run-all.sh (T, LOGS, RESULTS, RUNTIME, IMAGE_TAR).
#
# podman calls the runtime with no --root, so brig's default root
# (/run/brig) holds the state; run-all.sh checks nothing is left there.

PM_DIR=$T/podman
PM_IMG=docker.io/library/busybox:brig
PM_CGROUP=brig-engines/podman

# pm: podman with our private configuration and brig as the runtime.
# pmrun: `pm run` with our cgroup parent.
podman_setup() {
  mkdir -p "$T/bin" "$PM_DIR/tmp" "$PM_DIR/imgtmp"
  # static_dir is left at its default (GRAPHROOT/libpod): conmon's exit
  # command (`podman container cleanup`) passes --root but not static_dir,
  # and would look for the containers in another database.
  cat >"$PM_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"

[network]
network_config_dir = "$PM_DIR/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PM_DIR/events.log"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "brig"]
tmp_dir = "$PM_DIR/tmp"
volume_path = "$PM_DIR/volumes"
image_copy_tmp_dir = "$PM_DIR/imgtmp"
EOF
  cat >"$PM_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PM_DIR/graph"
runroot = "$PM_DIR/run"
EOF
  cp "$PM_DIR/containers.conf" "$PM_DIR/storage.conf" "$LOGS/"
  printf '#!/bin/sh\nCONTAINERS_CONF="%s" CONTAINERS_STORAGE_CONF="%s" exec podman --runtime "%s" "$@"\n' \
    "$PM_DIR/containers.conf" "$PM_DIR/storage.conf" "$RUNTIME" >"$T/bin/pm"
  printf '#!/bin/sh\nexec pm run --cgroup-parent "/%s" "$@"\n' "$PM_CGROUP" >"$T/bin/pmrun"
  chmod +x "$T/bin/pm" "$T/bin/pmrun"
}

podman_teardown() {
  pm rm -fa -t 1 >/dev/null 2>&1
  pm rmi -fa >/dev/null 2>&1
  cp "$PM_DIR/events.log" "$LOGS/podman-events.log" 2>/dev/null
  # podman keeps its storage mounted (graphroot/overlay, shm of gone
  # containers): nothing of brig's, but under our temp dir.
  umount_under "$PM_DIR"
}

pm_state() { pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>&1; }
pm_running() { wait_for 10 sh -c "pm inspect -f '{{.State.Status}}' $1 | grep -qx running"; }

podman_scenarios() {
  say "== podman $(podman --version | awk '{print $3}') + conmon with brig"
  podman_setup
  run pm load -i "$IMAGE_TAR"
  expect_re podman.load 0 "Loaded image: $PM_IMG"

  run pmrun --rm $PM_IMG true
  expect podman.run-true 0 ""
  run pmrun --rm $PM_IMG echo hello from brig
  expect podman.run-echo 0 "hello from brig"
  run pmrun --rm $PM_IMG sh -c 'exit 3'
  expect podman.run-exit-code-3 3 ""
  run pmrun --rm -e FOO=bar -w /tmp $PM_IMG sh -c 'echo $FOO $(id -u) $PWD $HOME; ulimit -n'
  expect podman.run-env-cwd-ulimit 0 "bar 0 /tmp /root
1024"
  run_tty pmrun --rm -t $PM_IMG sh -c 'test -t 0 && test -t 1 && echo tty-ok; tty; exit 4'
  if [ "$RC" = 4 ] && printf '%s\n' "$OUT" | grep -q 'tty-ok$' && printf '%s\n' "$OUT" | grep -Eq '/dev/pts/[0-9]+$'; then
    pass podman.run-tty
  else
    fail podman.run-tty "want rc=4, tty-ok and /dev/pts/N, got rc=$RC out='$(short "$OUT")'"
  fi
  run_in "hello stdin" pmrun --rm -i $PM_IMG sh -c 'cat; echo eof'
  expect podman.run-interactive-stdin 0 "hello stdin
eof"
  run pmrun --rm --memory 64m --pids-limit 42 $PM_IMG sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max'
  expect podman.run-memory-pids-limits 0 "67108864
42"
  run pmrun --rm --user 1000:1000 --cap-drop ALL $PM_IMG sh -c 'id; grep CapEff /proc/self/status'
  # (podman adds /etc/passwd and /etc/group entries for a numeric user)
  expect podman.run-user-cap-drop 0 "uid=1000(1000) gid=1000(1000) groups=1000(1000)
CapEff:	0000000000000000"
  run pmrun --rm $PM_IMG sh -c 'grep "^Seccomp:" /proc/self/status'
  expect podman.run-seccomp-default 0 "Seccomp:	2"
  run pmrun --rm $PM_IMG nosuchcmd
  expect_re podman.run-missing-command-127 127 'executable file not found in \$PATH'

  # A long-running container.
  local c=p-long
  run pmrun -d --name $c --memory 32m $PM_IMG sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  expect_rc podman.run-detached 0
  local cid=${OUT##*$'\n'}
  pm_running $c
  if [ "$(pm_state $c)" = "running 0" ] && [ -d "/sys/fs/cgroup/memory/$PM_CGROUP/libpod-$cid" ]; then
    pass podman.detached-running
  else
    fail podman.detached-running "state '$(pm_state $c)', cgroup /$PM_CGROUP/libpod-$cid"
  fi
  run pm exec $c echo exec-out
  expect podman.exec-echo 0 "exec-out"
  run pm exec $c sh -c 'exit 5'
  expect podman.exec-exit-code-5 5 ""
  run pm exec -u 1000 -w /tmp -e BAR=baz $c sh -c 'echo $(id -u) $PWD $BAR'
  expect podman.exec-user-cwd-env 0 "1000 /tmp baz"
  run_tty pm exec -t $c sh -c 'test -t 0 && echo tty-ok; tty'
  if [ "$RC" = 0 ] && printf '%s\n' "$OUT" | grep -q 'tty-ok$' && printf '%s\n' "$OUT" | grep -Eq '/dev/pts/[0-9]+$'; then
    pass podman.exec-tty
  else
    fail podman.exec-tty "want rc=0, tty-ok and /dev/pts/N, got rc=$RC out='$(short "$OUT")'"
  fi
  run_in "exec stdin" pm exec -i $c cat
  expect podman.exec-interactive-stdin 0 "exec stdin"
  run pm exec $c nosuchcmd
  expect_re podman.exec-missing-command-127 127 'executable file not found in \$PATH'

  run pm top $c
  expect_re podman.top 0 'while :; do sleep 1; done'
  run pm stats --no-stream --format '{{.MemUsage}}|{{.PIDs}}' $c
  if [ "$RC" = 0 ] && printf '%s' "$OUT" | grep -Eq '^[0-9.]+[kKMG]i?B / 33.55MB\|[1-9][0-9]*$'; then
    pass podman.stats
  else
    fail podman.stats "want 'N / 33.55MB|pids>0', got rc=$RC out='$(short "$OUT")'"
  fi

  run pm pause $c
  local fz
  fz=$(cat "/sys/fs/cgroup/freezer/$PM_CGROUP/libpod-$cid/freezer.state" 2>/dev/null)
  if [ "$RC" = 0 ] && [ "$(pm_state $c)" = "paused 0" ] && [ "$fz" = FROZEN ]; then
    pass podman.pause
  else
    fail podman.pause "rc=$RC state='$(pm_state $c)' freezer=$fz out='$(short "$OUT")'"
  fi
  run pm unpause $c
  if [ "$RC" = 0 ] && [ "$(pm_state $c)" = "running 0" ]; then pass podman.unpause; else fail podman.unpause "rc=$RC state='$(pm_state $c)' out='$(short "$OUT")'"; fi
  run pm exec $c echo after-unpause
  expect podman.exec-after-unpause 0 "after-unpause"

  # (podman 4.3's update has no --pids-limit)
  run pm update --memory 64m --memory-swap 128m --cpus 1.5 $c
  expect_rc podman.update 0
  run pm exec $c sh -c 'cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes cpu/cpu.cfs_quota_us'
  expect podman.update-seen-inside 0 "67108864
134217728
150000"

  run pm stop -t 10 $c
  if [ "$RC" = 0 ] && [ "$(pm_state $c)" = "exited 0" ]; then pass podman.stop-graceful; else fail podman.stop-graceful "rc=$RC state='$(pm_state $c)' out='$(short "$OUT")'"; fi
  check podman.no-cgroup-after-stop test ! -d "/sys/fs/cgroup/memory/$PM_CGROUP/libpod-$cid"
  check podman.no-state-after-stop test ! -e "/run/brig/$cid"
  run pm start $c
  pm_running $c
  run pm exec $c echo started-again
  expect podman.start-stopped-container 0 "started-again"
  run pm rm -f -t 1 $c
  expect_rc podman.rm-f-running 0
  check podman.rm-f-gone sh -c "! pm inspect $c"
  check podman.no-state-after-rm test ! -e "/run/brig/$cid"

  # sleep as pid 1 ignores SIGTERM: kill, stop -t 1.
  c=p-sleep
  run pmrun -d --name $c $PM_IMG sleep 600
  pm_running $c
  run pm kill $c
  if [ "$RC" = 0 ] && wait_for 10 sh -c "[ \"\$(pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' $c)\" = 'exited 137' ]"; then
    pass podman.kill
  else
    fail podman.kill "rc=$RC state='$(pm_state $c)' out='$(short "$OUT")'"
  fi
  run pm start $c
  pm_running $c
  local t0 t1
  t0=$(date +%s%N)
  run pm stop -t 1 $c
  t1=$(date +%s%N)
  if [ "$RC" = 0 ] && [ "$(pm_state $c)" = "exited 137" ] && [ $(((t1 - t0) / 1000000)) -ge 900 ]; then
    pass podman.stop-t1-escalates-to-kill
  else
    fail podman.stop-t1-escalates-to-kill "rc=$RC state='$(pm_state $c)' took $(((t1 - t0) / 1000000))ms out='$(short "$OUT")'"
  fi
  run pm rm $c
  expect_rc podman.rm 0

  run pm info --format '{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Path}}|{{.Host.OCIRuntime.Version}}'
  # (with --runtime PATH, podman names the runtime by its path)
  expect_re podman.info 0 "^$RUNTIME\|$RUNTIME\|brig version [0-9]"
  run pm ps -aq
  expect podman.no-container-left 0 ""
  podman_teardown
}
