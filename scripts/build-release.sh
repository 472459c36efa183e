#!/usr/bin/env bash
# Builds the release brig as a static-pie binary and prints its path.
# The target is named explicitly so that crt-static applies to brig only,
# not to the proc-macro crates built for the host.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --bin brig --target "$host" >&2
echo "$PWD/target/$host/release/brig"
