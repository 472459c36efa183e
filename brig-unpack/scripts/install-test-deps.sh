#!/bin/sh
# Installs the Debian tools brig-unpack's tests use: umoci (reference unpacker),
# skopeo (image conversions) and busybox-static (a program to run end to end).
# Idempotent: packages already present are skipped without touching apt.
set -eu
need=""
for pkg in umoci skopeo busybox-static; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi
