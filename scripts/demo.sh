#!/usr/bin/env bash
# Builds brig, makes a busybox bundle and runs a container from it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
brig=$(scripts/build-release.sh)

bundle=$(mktemp -d /tmp/brig-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $("$bundle/rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done

"$brig" spec --bundle "$bundle"
# A non-interactive process: no terminal, and something to show.
sed -i -e 's/"terminal": true/"terminal": false/' \
       -e 's/"sh"$/"sh", "-c", "echo hello from $(hostname), pid $$ in its namespace; id"/' \
       "$bundle/config.json"
"$brig" run --bundle "$bundle" "demo-$$"
