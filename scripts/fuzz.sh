#!/usr/bin/env bash
# Fuzzes what the API server reads from clients (fuzz/: request bodies in
# JSON, YAML and protobuf; JSON, merge, strategic merge and apply patches)
# for a bounded time per target: fuzz.sh [SECONDS] (default 30). A crash,
# a timeout (10 s for one input) or more than 2 GiB of memory fails it,
# and libFuzzer leaves the input in fuzz/artifacts/. cargo-fuzz is
# installed once under /var/cache/peapod/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
cache=/var/cache/peapod
export PATH="$cache/tools/bin:$PATH"
command -v cargo-fuzz >/dev/null || cargo install --locked --root "$cache/tools" cargo-fuzz

# Seeds: a Pod in each encoding's first byte, and a patch of each type.
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/decode" "$seeds/patch"
pod='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","env":[{"name":"A","value":"1"}]}]}}'
printf '\000%s' "$pod" >"$seeds/decode/json"
printf '\001apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: b}}\nspec: {containers: [{name: c, image: i}]}\n' >"$seeds/decode/yaml"
printf '\000%s\377[{"op":"copy","from":"/spec","path":"/metadata/x"},{"op":"add","path":"/spec/containers/-","value":{"name":"d"}}]' "$pod" >"$seeds/patch/json"
printf '\001%s\377{"metadata":{"labels":{"a":null,"c":"d"}}}' "$pod" >"$seeds/patch/merge"
printf '\002%s\377{"spec":{"containers":[{"name":"c","$patch":"delete"},{"name":"e","image":"j"}],"$setElementOrder/containers":[{"name":"e"}]}}' "$pod" >"$seeds/patch/strategic"
printf '\003%s\377apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: k}]}\n' "$pod" >"$seeds/patch/apply"

for target in decode patch; do
    mkdir -p "fuzz/corpus/$target"
    cargo fuzz run --fuzz-dir fuzz --target-dir "$cache/fuzz-target" --sanitizer none \
        "$target" "fuzz/corpus/$target" "$seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
