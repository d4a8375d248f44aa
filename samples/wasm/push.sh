#!/usr/bin/env bash
# Builds the Wasm samples for wasm32-wasip2 and pushes each to a registry
# as a Wasm OCI artifact: push.sh REGISTRY[:PORT] [TAG].
# Uses `peapod image push` ($PEAPOD, else `peapod` on the PATH).
set -euo pipefail
registry="$1"
tag="${2:-v1}"
here="$(cd "$(dirname "$0")" && pwd)"
peapod="${PEAPOD:-peapod}"
target="${SAMPLES_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/cache/peapod}/samples-target}"
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --quiet --release --target wasm32-wasip2)
for sample in hello_http:hello-http read-volume:read-volume tcp-server:tcp-server misbehave:misbehave misbehave_http:misbehave-http; do
    file="${sample%%:*}"
    name="${sample##*:}"
    "$peapod" image push --insecure-registry "$registry" \
        "$target/wasm32-wasip2/release/$file.wasm" "$registry/samples/$name:$tag" >/dev/null
    echo "$registry/samples/$name:$tag"
done
