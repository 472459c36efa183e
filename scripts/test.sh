#!/usr/bin/env bash
# Runs every test of the workspace: unit tests and the integration suites
# (real containers; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo test --workspace -- --test-threads=2
# cgroup v2: the same suite inside a guest booted with pure cgroup v2.
integration/vm/test-v2.sh
