#!/usr/bin/env bash
# Writes scripts/link-order/brig.order: brig's functions in the order a
# container's life (create, start, state, exec, kill, delete, run) first
# runs them. scripts/build-release.sh hands it to the linker
# (--symbol-ordering-file), so the code those commands run sits together.
#
# Why: the kernel maps a binary's pages 64 KiB at a time around each page
# fault (fault-around), and these commands touch a few hundred functions
# spread over 3 MiB of code, so nearly every 64 KiB window of the text ended
# up resident. Laid out in run order, the same work touches a fraction of
# it: less peak RSS, fewer faults.
#
# Run it after changes that rename many symbols (dependency updates, new
# compiler); names it no longer finds are ignored, so a stale list only
# costs locality. Needs root, gcc and busybox-static (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
host=$(rustc -vV | sed -n 's/^host: //p')
work=$(mktemp -d /tmp/brig-link-order.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The release build's exact compilation (scripts/build-release.sh), only
# linked without stripping so that its symbols can be traced.
RUSTFLAGS="$(scripts/build-release.sh --rustflags)" \
  cargo rustc --release --bin brig --target "$host" --target-dir "$work/target" -- -C strip=none >&2
brig=$work/target/$host/release/brig
gcc -O2 -o "$work/symtrace" scripts/link-order/symtrace.c
nm --defined-only "$brig" | awk '$2 ~ /^[tTwW]$/ { print $1, $3 }' >"$work/symbols"

# A busybox bundle, one for a short-lived and one for a long-lived container.
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh true sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done
for b in short long; do
  mkdir "$work/$b"
  "$brig" spec --bundle "$work/$b"
done
python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
for b, args in [("short", ["/bin/true"]), ("long", ["sleep", "30"])]:
    path = f"{work}/{b}/config.json"
    c = json.load(open(path))
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    c["root"] = {"path": f"{work}/rootfs", "readonly": True}
    c["linux"]["cgroupsPath"] = f"/brig-link-order/{b}"
    json.dump(c, open(path, "w"))
EOF

trace() { "$work/symtrace" "$work/symbols" "$work/order" -- "$brig" --root "$work/state" "$@"; }
id=lo-$$
trace create --bundle "$work/short" "$id-1" >/dev/null
trace start "$id-1"
sleep 0.2
trace state "$id-1" >/dev/null
trace delete "$id-1"
trace run --detach --bundle "$work/long" "$id-2"
trace exec "$id-2" /bin/true
trace kill "$id-2" KILL
sleep 0.2
trace delete --force "$id-2"
trace run --bundle "$work/short" "$id-3"
trace list >/dev/null
# First run wins: each trace lists a function the first time it runs there.
awk '!seen[$0]++' "$work/order" >scripts/link-order/brig.order
echo "scripts/link-order/brig.order: $(wc -l <scripts/link-order/brig.order) functions of $(wc -l <"$work/symbols")" >&2
