#!/usr/bin/env bash
# Runs every test of the workspace: unit tests and the integration suites
# (real containers; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo test --workspace -- --test-threads=2
