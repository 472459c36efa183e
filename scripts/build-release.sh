#!/usr/bin/env bash
# Builds the release brig as a static, non-PIE binary and prints its path.
# Static: no dynamic loader work at every call. Non-PIE: no self-relocation
# at start-up either (11k relocations, and the pages they dirty: ~0.4 MB less
# peak RSS per call than static-pie, measured). The target is named
# explicitly so that these flags apply to brig only, not to the proc-macro
# crates built for the host. The functions a container's life runs are
# linked together, in the order of scripts/link-order/brig.order (see
# scripts/link-order/generate.sh).
# `--rustflags` prints the RUSTFLAGS only.
set -euo pipefail
cd "$(dirname "$0")/.."
rustflags="-C target-feature=+crt-static -C relocation-model=static"
if [ "${1:-}" = --rustflags ]; then
  echo "$rustflags"
  exit 0
fi
host=$(rustc -vV | sed -n 's/^host: //p')
order=$PWD/scripts/link-order/brig.order
# Link arguments go to the binary's link step only (cargo rustc), so the
# crates compile exactly as generate.sh traced them and keep their symbol names.
RUSTFLAGS="$rustflags" cargo rustc --release --bin brig --target "$host" -- \
  -C link-arg=-Wl,--symbol-ordering-file="$order" -C link-arg=-Wl,--no-warn-symbol-ordering >&2
echo "$PWD/target/$host/release/brig"
