#!/bin/bash
# Benchmarks brig-unpack against umoci on the same image, built here from the
# host's own files (no registry needed):
#   1. flat unpack:      umoci unpack            vs  brig-unpack --flat
#   2. second bundle:    umoci unpack (again)    vs  brig-unpack with a warm layer store
# Usage: bench/bench.sh [WORKDIR]   (needs root, umoci, bc; run scripts/install-test-deps.sh)
# Env: RUNS (default 3), SRC_DIRS (host dirs turned into layers), COMPRESS (gzip|zstd).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/brig-unpack-bench.XXXXXX)}"
runs="${RUNS:-3}"
compress="${COMPRESS:-gzip}"
src_dirs="${SRC_DIRS:-/usr/bin /usr/share/perl /usr/lib/python3 /usr/share/zoneinfo /usr/include}"
mkdir -p "$work"

echo "building brig-unpack (release)..." >&2
(cd "$here/.." && CARGO_TARGET_DIR="$here/../target-unpack" nice -n 10 cargo build -q --release -p brig-unpack)
bu="$here/../target-unpack/release/brig-unpack"

img="$work/img"
if [ ! -d "$img" ]; then
    echo "building a ${compress} image from: $src_dirs" >&2
    umoci init --layout "$work/gz" >/dev/null
    umoci new --image "$work/gz:latest" >/dev/null
    for d in $src_dirs; do
        [ -d "$d" ] && umoci insert --image "$work/gz:latest" "$d" "$d" >/dev/null
    done
    if [ "$compress" = zstd ]; then
        skopeo copy -q --dest-compress-format zstd --dest-compress "oci:$work/gz:latest" "oci:$img:latest"
    else
        mv "$work/gz" "$img"
    fi
fi
size=$(du -sm "$img" | cut -f1)
layers=$(python3 -c "import json,sys;i=json.load(open('$img/index.json'));d=i['manifests'][0]['digest'].split(':')[1];m=json.load(open('$img/blobs/sha256/'+d));print(len(m['layers']))")

store="$work/store"

# Median wall time of a command over $runs runs, each in a fresh target dir.
timeit() {
    local label="$1"; shift
    local times=()
    for i in $(seq "$runs"); do
        local out="$work/out-$label-$i"
        rm -rf "$out"
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        local t0 t1
        t0=$(date +%s.%N)
        "$@" "$out" >/dev/null 2>&1
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc)")
        cleanup "$out"
        # Each cold run starts without a store; removing it is not part of the timing.
        if [ "$label" = cold ]; then rm -rf "$store"; sync; fi
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

cleanup() {
    if [ -f "$1/brig-unpack.json" ]; then "$bu" rm "$1"; fi
    rm -rf "$1"
}

umoci_unpack() { umoci unpack --image "$img:latest" "$1"; }
brig_flat() { "$bu" --flat -q "oci:$img:latest" "$1"; }
store="$work/store"
brig_cold() { "$bu" -q --store "$store" "oci:$img:latest" "$1"; }
brig_warm() { "$bu" -q --store "$store" "oci:$img:latest" "$1"; }

echo "image: $size MiB compressed, $layers layers ($compress); $runs runs each, median" >&2
t_umoci=$(timeit umoci umoci_unpack)
t_flat=$(timeit flat brig_flat)
rm -rf "$store"
t_cold=$(timeit cold brig_cold)
rm -rf "$store"; "$bu" -q --store "$store" "oci:$img:latest" "$work/first" # the first bundle
t_warm=$(timeit warm brig_warm)
cleanup "$work/first"

ratio() { echo "scale=1; $1 / $2" | bc; }
printf '%-44s %8.2fs\n' "umoci unpack" "$t_umoci"
printf '%-44s %8.2fs  (%sx faster than umoci)\n' "brig-unpack --flat" "$t_flat" "$(ratio "$t_umoci" "$t_flat")"
printf '%-44s %8.2fs  (%sx)\n' "brig-unpack, cold layer store (overlay)" "$t_cold" "$(ratio "$t_umoci" "$t_cold")"
printf '%-44s %8.2fs  (%sx)\n' "brig-unpack, second bundle, warm store" "$t_warm" "$(ratio "$t_umoci" "$t_warm")"
