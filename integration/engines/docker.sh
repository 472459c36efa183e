# Docker 20.10 (Debian's docker.io) with brig, first added as a runtime
# (--add-runtime, used with `docker run --runtime brig`), then as the
# default runtime. Sourced by run-all.sh (T, LOGS, RESULTS, RUNTIME, IMAGE_TAR).

DK_DIR=$T/docker
DK_SOCK=$T/docker.sock
DK_IMG=busybox:brig
DK_CGROUP=brig-engines/docker
DOCKERD_PID=

# dk: Debian's client (a newer one may be first on PATH) against our daemon.
docker_wrappers() {
  mkdir -p "$T/bin" "$DK_DIR/client"
  printf '#!/bin/sh\nDOCKER_CONFIG="%s" exec /usr/bin/docker -H "unix://%s" "$@"\n' "$DK_DIR/client" "$DK_SOCK" >"$T/bin/dk"
  chmod +x "$T/bin/dk"
}

# docker_start MODE: MODE "add" (brig is an extra runtime) or "default".
docker_start() {
  local mode=$1 default=
  docker_wrappers
  [ "$mode" = default ] && default='"default-runtime": "brig",'
  cat >"$DK_DIR/daemon.json" <<EOF
{
  "data-root": "$DK_DIR/root",
  "exec-root": "$DK_DIR/exec",
  "pidfile": "$DK_DIR/dockerd.pid",
  "hosts": ["unix://$DK_SOCK"],
  "bridge": "none",
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false,
  "userland-proxy": false,
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/$DK_CGROUP",
  "runtimes": { "brig": { "path": "$RUNTIME" } },
  $default
  "log-level": "debug"
}
EOF
  cp "$DK_DIR/daemon.json" "$LOGS/daemon-$mode.json"
  dockerd --config-file "$DK_DIR/daemon.json" >>"$LOGS/dockerd-$mode.log" 2>&1 &
  DOCKERD_PID=$!
  echo "$DOCKERD_PID" >"$T/dockerd.pid"
  wait_socket "$DOCKERD_PID" "$DK_SOCK" 60 && wait_for 30 dk version
}

docker_stop() {
  local ids
  ids=$(dk ps -aq 2>/dev/null)
  [ -n "$ids" ] && dk rm -f $ids >/dev/null 2>&1
  stop_pid "$DOCKERD_PID" 30
  DOCKERD_PID=
  # dockerd leaves its data-root bind mount (and, after a crash, more).
  umount_under "$DK_DIR"
}

dk_state() { dk inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$1" 2>&1; }

# Runs `dk run --rm --runtime brig IMG ARGS` unless told otherwise.
dkrun() { run dk run --rm --runtime brig "$@"; }

docker_scenarios() {
  say "== Docker $(dockerd --version | awk '{print $3}' | tr -d ,) with brig (--add-runtime)"
  OUT_FILTER='^WARNING: IPv4 forwarding is disabled'
  if ! docker_start add; then
    fail docker.start "dockerd did not come up (see $LOGS/dockerd-add.log)"
    OUT_FILTER=
    return
  fi
  pass docker.start
  run dk load -i "$IMAGE_TAR"
  expect docker.load 0 "Loaded image: $DK_IMG"

  dkrun $DK_IMG true
  expect docker.run-true 0 ""
  dkrun $DK_IMG echo hello from brig
  expect docker.run-echo 0 "hello from brig"
  dkrun $DK_IMG sh -c 'exit 3'
  expect docker.run-exit-code-3 3 ""
  # (pid 1 cannot be killed from inside: the process that dies is a child)
  dkrun $DK_IMG sh -c 'sh -c "kill -9 \$\$"; echo $?'
  expect_re docker.run-child-killed-137 0 '^137$'
  dkrun -e FOO=bar -w /tmp $DK_IMG sh -c 'echo $FOO $(id -u) $PWD $HOME $(hostname | wc -c)'
  expect docker.run-env-cwd 0 "bar 0 /tmp /root 13"

  run_tty dk run --rm -t --runtime brig $DK_IMG sh -c 'test -t 0 && test -t 1 && echo tty-ok; tty; exit 4'
  if [ "$RC" = 4 ] && printf '%s\n' "$OUT" | grep -q 'tty-ok$' && printf '%s\n' "$OUT" | grep -Eq '/dev/pts/[0-9]+$'; then
    pass docker.run-tty
  else
    fail docker.run-tty "want rc=4, tty-ok and /dev/pts/N, got rc=$RC out='$(short "$OUT")'"
  fi
  run_in "hello stdin" dk run --rm -i --runtime brig $DK_IMG sh -c 'cat; echo eof'
  expect docker.run-interactive-stdin 0 "hello stdin
eof"

  # stderr and stdout reach the client on separate streams: their relative
  # order is not fixed, so the error goes to stdout with the rest.
  dkrun --read-only $DK_IMG sh -c 'touch /x 2>&1; echo rc=$?; touch /dev/shm/y && echo shm-ok'
  expect docker.run-read-only 0 "touch: /x: Read-only file system
rc=1
shm-ok"
  dkrun --network none $DK_IMG ls /sys/class/net
  expect docker.run-network-none 0 "lo"
  dkrun --memory 64m $DK_IMG cat /sys/fs/cgroup/memory/memory.limit_in_bytes
  expect docker.run-memory-limit 0 "67108864"
  dkrun --pids-limit 42 $DK_IMG cat /sys/fs/cgroup/pids/pids.max
  expect docker.run-pids-limit 0 "42"
  dkrun --cpus 0.5 $DK_IMG sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us'
  expect docker.run-cpus 0 "50000
100000"
  dkrun --user 1000:1000 $DK_IMG id
  expect docker.run-user 0 "uid=1000 gid=1000 groups=1000"
  dkrun --user nobody $DK_IMG sh -c 'id -u; echo $HOME'
  expect docker.run-user-by-name 0 "65534
/home"
  dkrun $DK_IMG grep CapEff /proc/self/status
  expect docker.run-default-caps 0 "CapEff:	00000000a80425fb"
  dkrun --cap-drop ALL $DK_IMG sh -c 'grep CapEff /proc/self/status; chown 1 /tmp 2>&1; echo rc=$?'
  expect docker.run-cap-drop-all 0 "CapEff:	0000000000000000
chown: /tmp: Operation not permitted
rc=1"
  # Docker's default profile: seccomp filter mode, and unshare(2) is refused
  # (it is allowed only with CAP_SYS_ADMIN).
  dkrun $DK_IMG sh -c 'grep "^Seccomp:" /proc/self/status; unshare -U true 2>&1; echo rc=$?'
  expect docker.run-seccomp-default 0 "Seccomp:	2
unshare: unshare(0x10000000): Operation not permitted
rc=1"
  dkrun --security-opt seccomp=unconfined $DK_IMG sh -c 'grep "^Seccomp:" /proc/self/status; unshare -U true; echo rc=$?'
  expect docker.run-seccomp-unconfined 0 "Seccomp:	0
rc=0"

  # Docker derives 127/126 from the runtime's error text (runc's wording).
  dkrun $DK_IMG /no/such/binary
  expect_re docker.run-missing-path-127 127 'no such file or directory'
  dkrun $DK_IMG nosuchcmd
  expect_re docker.run-missing-command-127 127 'executable file not found in \$PATH'
  dkrun $DK_IMG /etc/passwd
  expect_re docker.run-not-executable-126 126 'permission denied'
  dkrun $DK_IMG /etc
  expect_re docker.run-directory-126 126 'permission denied'

  # A long-running container: exec, top, stats, pause, update.
  local c=brig-long
  run dk run -d --name $c --runtime brig --memory 32m $DK_IMG sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  expect_rc docker.run-detached 0
  local cid=${OUT##*$'\n'}
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  run dk inspect -f '{{.HostConfig.Runtime}} {{.State.Status}}' $c
  expect docker.detached-running-with-brig 0 "brig running"
  check docker.detached-cgroup-under-parent test -d "/sys/fs/cgroup/memory/$DK_CGROUP/$cid"

  run dk exec $c echo exec-out
  expect docker.exec-echo 0 "exec-out"
  run dk exec $c sh -c 'exit 5'
  expect docker.exec-exit-code-5 5 ""
  run dk exec -u 1000:1000 -w /tmp -e BAR=baz $c sh -c 'echo $(id -u) $PWD $BAR'
  expect docker.exec-user-cwd-env 0 "1000 /tmp baz"
  run_tty dk exec -t $c sh -c 'test -t 0 && echo tty-ok; tty'
  if [ "$RC" = 0 ] && printf '%s\n' "$OUT" | grep -q 'tty-ok$' && printf '%s\n' "$OUT" | grep -Eq '/dev/pts/[0-9]+$'; then
    pass docker.exec-tty
  else
    fail docker.exec-tty "want rc=0, tty-ok and /dev/pts/N, got rc=$RC out='$(short "$OUT")'"
  fi
  run_in "exec stdin" dk exec -i $c cat
  expect docker.exec-interactive-stdin 0 "exec stdin"
  # (docker exec maps every exec failure to 126, with runc too)
  run dk exec $c nosuchcmd
  expect_re docker.exec-missing-command-126 126 'executable file not found in \$PATH'

  run dk top $c
  expect_re docker.top 0 'while :; do sleep 1; done'
  run dk stats --no-stream --format '{{.MemUsage}}|{{.PIDs}}' $c
  if [ "$RC" = 0 ] && printf '%s' "$OUT" | grep -Eq '^[0-9.]+[KMG]i?B / 32MiB\|[1-9][0-9]*$'; then
    pass docker.stats
  else
    fail docker.stats "want 'N MiB / 32MiB|pids>0', got rc=$RC out='$(short "$OUT")'"
  fi

  run dk pause $c
  local fz
  fz=$(cat "/sys/fs/cgroup/freezer/$DK_CGROUP/$cid/freezer.state" 2>/dev/null)
  if [ "$RC" = 0 ] && [ "$(dk_state $c)" = "paused 0" ] && [ "$fz" = FROZEN ]; then
    pass docker.pause
  else
    fail docker.pause "rc=$RC state='$(dk_state $c)' freezer=$fz out='$(short "$OUT")'"
  fi
  run dk exec $c true
  expect_re docker.exec-refused-while-paused 1 'is paused'
  run dk unpause $c
  if [ "$RC" = 0 ] && [ "$(dk_state $c)" = "running 0" ]; then pass docker.unpause; else fail docker.unpause "rc=$RC state='$(dk_state $c)' out='$(short "$OUT")'"; fi
  run dk exec $c echo after-unpause
  expect docker.exec-after-unpause 0 "after-unpause"

  run dk update --memory 64m --memory-swap 128m --pids-limit 77 --cpus 1.5 $c
  expect_rc docker.update 0
  run dk exec $c sh -c 'cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us'
  expect docker.update-seen-inside 0 "67108864
134217728
77
150000"
  run dk stats --no-stream --format '{{.MemUsage}}' $c
  expect_re docker.stats-after-update 0 '/ 64MiB$'

  # stop: SIGTERM, the init's trap exits 0.
  run dk stop -t 10 $c
  if [ "$RC" = 0 ] && [ "$(dk_state $c)" = "exited 0" ]; then pass docker.stop-graceful; else fail docker.stop-graceful "rc=$RC state='$(dk_state $c)'"; fi
  check docker.no-cgroup-after-stop test ! -d "/sys/fs/cgroup/memory/$DK_CGROUP/$cid"
  run dk start $c
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  run dk exec $c echo started-again
  expect docker.start-stopped-container 0 "started-again"
  run dk rm -f $c
  expect docker.rm-f-running 0 "$c"
  check docker.rm-f-gone sh -c "! dk inspect $c"
  check docker.no-cgroup-after-rm test ! -d "/sys/fs/cgroup/memory/$DK_CGROUP/$cid"

  # An init that ignores SIGTERM (sleep as pid 1): kill, stop -t 1, restart.
  c=brig-sleep
  run dk run -d --name $c --runtime brig $DK_IMG sleep 600
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  run dk kill $c
  if [ "$RC" = 0 ] && wait_for 10 sh -c "[ \"\$(dk inspect -f '{{.State.Status}} {{.State.ExitCode}}' $c)\" = 'exited 137' ]"; then
    pass docker.kill
  else
    fail docker.kill "rc=$RC state='$(dk_state $c)'"
  fi
  run dk start $c
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  local t0 t1
  t0=$(date +%s%N)
  run dk stop -t 1 $c
  t1=$(date +%s%N)
  if [ "$RC" = 0 ] && [ "$(dk_state $c)" = "exited 137" ] && [ $(((t1 - t0) / 1000000)) -ge 900 ]; then
    pass docker.stop-t1-escalates-to-kill
  else
    fail docker.stop-t1-escalates-to-kill "rc=$RC state='$(dk_state $c)' took $(((t1 - t0) / 1000000))ms"
  fi
  run dk start $c
  local pid1 pid2
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  pid1=$(dk inspect -f '{{.State.Pid}}' $c)
  run dk restart -t 1 $c
  wait_for 10 sh -c "dk inspect -f '{{.State.Status}}' $c | grep -qx running"
  pid2=$(dk inspect -f '{{.State.Pid}}' $c)
  if [ "$RC" = 0 ] && [ "$(dk_state $c)" = "running 0" ] && [ "$pid1" != "$pid2" ] && [ "$pid2" != 0 ]; then
    pass docker.restart
  else
    fail docker.restart "rc=$RC state='$(dk_state $c)' pid before=$pid1 after=$pid2"
  fi
  run dk exec $c echo after-restart
  expect docker.exec-after-restart 0 "after-restart"
  run dk rm -f $c
  expect docker.rm-f 0 "$c"

  run dk info --format '{{json .Runtimes.brig}}'
  expect_re docker.info-lists-brig 0 "\"path\":\"$RUNTIME\""

  run dk ps -aq
  expect docker.no-container-left 0 ""
  docker_stop
  check docker.stopped sh -c "! kill -0 $(cat "$T/dockerd.pid") 2>/dev/null"

  say "== Docker with brig as the default runtime"
  if ! docker_start default; then
    fail docker.default.start "dockerd did not come up (see $LOGS/dockerd-default.log)"
    OUT_FILTER=
    return
  fi
  pass docker.default.start
  run dk run --rm $DK_IMG echo default runtime
  expect docker.default.run-echo 0 "default runtime"
  run dk run -d --name brig-default $DK_IMG sleep 600
  run dk inspect -f '{{.HostConfig.Runtime}} {{.State.Status}}' brig-default
  expect docker.default.runtime-is-brig 0 "brig running"
  run dk exec brig-default echo ok
  expect docker.default.exec 0 "ok"
  run dk rm -f brig-default
  expect docker.default.rm-f 0 "brig-default"
  # docker info runs `brig --version` and parses runc's "commit:" line.
  local commit
  commit=$("$BRIG_REAL" --version | awk '/^commit:/ {print $2}')
  run dk info --format '{{.DefaultRuntime}} {{.RuncCommit.ID}}'
  expect docker.default.info 0 "brig $commit"
  docker_stop
  check docker.default.stopped sh -c "! kill -0 $(cat "$T/dockerd.pid") 2>/dev/null"
  OUT_FILTER=
}
