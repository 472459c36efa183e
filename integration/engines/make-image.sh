#!/usr/bin/env bash
# make-image.sh OUT.tar [NAME:TAG] [CMD-JSON]
#
# Builds a one-layer busybox image from Debian's busybox-static (/bin/busybox)
# without any registry: one tar holding an OCI image layout (oci-layout,
# index.json, blobs/sha256/...) and a Docker manifest.json naming the same
# blobs, which `ctr images import`, `docker load` and `podman load` all take.
# The layer is an uncompressed tar (its digest is its diff_id).
set -euo pipefail

out=${1:?usage: make-image.sh OUT.tar [NAME:TAG]}
ref=${2:-docker.io/library/busybox:brig}
cmd=${3:-'["sh"]'}
tag=${ref##*:}
[ -x /bin/busybox ] || { echo "make-image.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
img=$work/img
mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,root,var/tmp,home} "$img/blobs/sha256"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
nogroup:x:65534:
EOF
echo brig-busybox >"$root/etc/hostname"

layer=$work/layer.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$layer" .
layer_hex=$(sha256sum "$layer" | cut -d' ' -f1)
layer_size=$(stat -c %s "$layer")
mv "$layer" "$img/blobs/sha256/$layer_hex"

config=$work/config.json
printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"1970-01-01T00:00:00Z\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":$cmd,\"WorkingDir\":\"/\"},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_hex\"]},\
\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"brig integration/engines/make-image.sh\"}]}" >"$config"
config_hex=$(sha256sum "$config" | cut -d' ' -f1)
config_size=$(stat -c %s "$config")
mv "$config" "$img/blobs/sha256/$config_hex"

manifest=$work/manifest
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_hex\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$layer_hex\",\"size\":$layer_size}]}" >"$manifest"
manifest_hex=$(sha256sum "$manifest" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$manifest")
mv "$manifest" "$img/blobs/sha256/$manifest_hex"

printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_hex\",\"size\":$manifest_size,\
\"annotations\":{\"io.containerd.image.name\":\"$ref\",\"org.opencontainers.image.ref.name\":\"$tag\"},\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}" >"$img/index.json"
printf '%s' "[{\"Config\":\"blobs/sha256/$config_hex\",\"RepoTags\":[\"$ref\"],\"Layers\":[\"blobs/sha256/$layer_hex\"]}]" >"$img/manifest.json"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$img" -cf "$out" .
