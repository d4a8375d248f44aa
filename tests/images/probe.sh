#!/usr/bin/env bash
# Builds the system call prober (probe.c, static) into an image of that one
# file and pushes it: probe.sh REGISTRY[:PORT]. Needs gcc, umoci and skopeo.
set -euo pipefail
registry="$1"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

umoci init --layout "$work/layout"
umoci new --image "$work/layout:1"
umoci unpack --rootless --image "$work/layout:1" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs"/{proc,sys,dev,tmp,etc}
gcc -static -O2 -pthread -o "$work/bundle/rootfs/probe" "$here/probe.c"
umoci repack --image "$work/layout:1" "$work/bundle" >/dev/null
umoci config --image "$work/layout:1" --config.cmd /probe >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:1" "docker://$registry/probe:1"
