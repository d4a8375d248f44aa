#!/usr/bin/env bash
# Builds a busybox OCI image from Debian's busybox-static and pushes it to a
# registry: busybox.sh REGISTRY[:PORT] [TAG]; or loads it into the local
# Docker engine: busybox.sh docker-daemon:NAME:TAG. Needs umoci and skopeo.
set -euo pipefail
registry="$1"
tag="${2:-1.36}"
case "$registry" in
docker-daemon:*) dest="$registry" ;;
*) dest="docker://$registry/busybox:$tag" ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

umoci init --layout "$work/layout"
umoci new --image "$work/layout:$tag"
umoci unpack --rootless --image "$work/layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/www,root,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list-full); do
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
echo 'nogroup:x:65534:' >>"$rootfs/etc/group"
umoci repack --image "$work/layout:$tag" "$work/bundle" >/dev/null
umoci config --image "$work/layout:$tag" --config.cmd sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin >/dev/null
case "$dest" in
docker://*) skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:$tag" "$dest" ;;
*) skopeo copy --quiet "oci:$work/layout:$tag" "$dest" ;;
esac
