#!/usr/bin/env bash
# Runs every test: unit tests and the integration suites (real containers),
# the cgroup suite in a pure cgroup v2 guest, and the engine suite
# (containerd, Docker, podman with brig as their runtime). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo test --workspace --all-targets -- --test-threads=2
# cgroup v2: the cgroup suite inside a guest booted with pure cgroup v2.
integration/vm/test-v2.sh
# Real engines driving brig end to end.
integration/engines/run-all.sh
