# containerd's CRI plugin (what Kubernetes' kubelet talks to) with a runtime
# handler "brig": the config Kubernetes users add, checked as far as this
# machine allows without a kubelet: containerd accepts it, and a host-network
# pod sandbox plus one container run through it, driven over the CRI gRPC API
# by cri-client.py. Sourced by run-all.sh (T, LOGS, RESULTS, RUNTIME).

CRI_DIR=$T/cri
CRI_SOCK=$T/cri.sock
CRI_CGROUP=brig-engines/cri
CRI_PID=


cri_start() {
  mkdir -p "$CRI_DIR" "$T/bin"
  # cri_ ARGS: cri-client.py against our socket (a command: timeout runs it)
  printf '#!/bin/sh\nexec /usr/bin/python3 "%s" "%s" "$@"\n' "$ENGINES_DIR/cri-client.py" "$CRI_SOCK" >"$T/bin/cri_"
  chmod +x "$T/bin/cri_"
  cat >"$CRI_DIR/config.toml" <<EOF
version = 2
root = "$CRI_DIR/root"
state = "$CRI_DIR/state"
[grpc]
  address = "$CRI_SOCK"
[ttrpc]
  address = "$CRI_SOCK.ttrpc"
[debug]
  level = "debug"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:brig"
  stream_server_address = "127.0.0.1"
  # No CAP_SYS_RESOURCE here: the sandbox's oomScoreAdj (-998) could not be
  # set; this keeps it at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CRI_DIR/cni-bin"
    conf_dir = "$CRI_DIR/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.brig]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.brig.options]
        BinaryName = "$RUNTIME"
        Root = "$CRI_DIR/brig-root"
EOF
  cp "$CRI_DIR/config.toml" "$LOGS/containerd-cri.toml"
  containerd --config "$CRI_DIR/config.toml" >"$LOGS/containerd-cri.log" 2>&1 &
  CRI_PID=$!
  echo "$CRI_PID" >"$T/containerd-cri.pid"
  wait_socket "$CRI_PID" "$CRI_SOCK" 30
}

cri_scenarios() {
  say "== containerd CRI plugin with a \"brig\" runtime handler (no kubelet)"
  # A pause-like image for the sandbox (its Cmd must keep running).
  if ! "$ENGINES_DIR/make-image.sh" "$T/pause.tar" registry.k8s.io/pause:brig '["sleep","2147483647"]' >>"$LOGS/image.log" 2>&1; then
    fail cri.pause-image "see $LOGS/image.log"
    return
  fi
  if ! cri_start; then
    fail cri.start "containerd with CRI did not come up (see $LOGS/containerd-cri.log)"
    return
  fi
  pass cri.start
  run ctr -a "$CRI_SOCK" plugins ls
  expect_re cri.plugin-loaded 0 '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*[[:space:]]ok[[:space:]]*$'
  run cri_ status
  if [ "$RC" = 0 ] && printf '%s' "$OUT" | grep -q '^version containerd ' &&
    printf '%s' "$OUT" | grep '^config ' | grep -q "\"brig\": {\"runtimeType\": \"io.containerd.runc.v2\"" &&
    printf '%s' "$OUT" | grep '^config ' | grep -q "\"BinaryName\": \"$RUNTIME\""; then
    pass cri.config-accepted
  else
    fail cri.config-accepted "want CRI Status listing runtime brig with BinaryName $RUNTIME, got rc=$RC out='$(short "$OUT")'"
  fi
  run ctr -a "$CRI_SOCK" -n k8s.io images import "$IMAGE_TAR"
  run ctr -a "$CRI_SOCK" -n k8s.io images import "$T/pause.tar"
  expect_re cri.images-imported 0 'registry.k8s.io/pause:brig'

  run cri_ pod-run brig registry.k8s.io/pause:brig docker.io/library/busybox:brig "/$CRI_CGROUP" \
    sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  local pod ctr
  pod=$(printf '%s\n' "$OUT" | awk '$1 == "pod" {print $2}')
  ctr=$(printf '%s\n' "$OUT" | awk '$1 == "ctr" {print $2}')
  if [ "$RC" = 0 ] && [ -n "$pod" ] && [ -n "$ctr" ]; then
    pass cri.pod-and-container-run
  else
    fail cri.pod-and-container-run "rc=$RC out='$(short "$OUT")'"
  fi
  if [ -n "$ctr" ]; then
    run cri_ ctr-status "$ctr"
    expect cri.container-running 0 "RUNNING"
    run cri_ exec "$ctr" sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "'
    expect cri.exec-sync 0 "exec-ok
sleep 2147483647 "
    run cri_ exec "$ctr" sh -c 'exit 3'
    expect_rc cri.exec-sync-exit-code 3
    # Both the sandbox and the container were created by brig (trace.log
    # exists when the runtime is the tracing wrapper, the default).
    if [ "${BRIG_ENGINES_TRACE:-1}" = 1 ]; then
      if grep -q " create .*$pod" "$LOGS/trace.log" && grep -q " create .*$ctr" "$LOGS/trace.log"; then
        pass cri.brig-created-both
      else
        fail cri.brig-created-both "no brig create of the sandbox $pod or the container $ctr in trace.log"
      fi
    fi
  fi
  if [ -n "$pod" ]; then
    run cri_ pod-rm "$pod" "$ctr"
    expect_rc cri.pod-stopped-and-removed 0
  fi
  check cri.no-runtime-state-left sh -c "[ -z \"\$(ls -A '$CRI_DIR/brig-root/k8s.io' 2>/dev/null)\" ]"
  stop_pid "$CRI_PID" 20
  CRI_PID=
  umount_under "$CRI_DIR"
}
