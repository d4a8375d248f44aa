#!/usr/bin/env bash
# Fails when a crate lists a dependency its sources never name (the
# `cargo machete` check, without installing it). A dependency kept only to
# select features is allowed with a `# features only` comment above it.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for manifest in */Cargo.toml; do
    crate="$(dirname "$manifest")"
    [ -d "$crate/src" ] || continue
    sources=("$crate/src")
    [ "$crate" = peapod ] && sources+=(tests)
    # Dependency names in [dependencies], skipping those marked features-only.
    deps="$(awk '
        /^\[/ { section = $0; next }
        section == "[dependencies]" && /^# features only/ { skip = 1; next }
        section == "[dependencies]" && /^[A-Za-z0-9_-]+[ .=]/ {
            name = $0; sub(/[ .=].*/, "", name)
            if (!skip) print name
            skip = 0
        }' "$manifest")"
    for dep in $deps; do
        id="${dep//-/_}"
        if ! grep -rqw -- "$id" "${sources[@]}"; then
            echo "$manifest: $dep is never used" >&2
            status=1
        fi
    done
done
exit $status
