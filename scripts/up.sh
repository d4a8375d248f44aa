#!/usr/bin/env bash
# Installs what Peapod needs on a fresh Debian machine (run as root), builds
# it, starts `peapod up` with the embedded store, and deploys the sample in
# samples/hello. Logs go to /var/log/peapod.log.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y ca-certificates curl build-essential iptables iproute2 busybox-static
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v kubectl >/dev/null; then
    echo "kubectl is not installed: see https://kubernetes.io/docs/tasks/tools/" >&2
    exit 1
fi

cargo build --release -p peapod
target="${CARGO_TARGET_DIR:-target}"
install -m 0755 "$target/release/peapod" /usr/local/bin/peapod

data=/var/lib/peapod
mkdir -p "$data"
rm -f "$data/kubeconfig"
nohup peapod up --data-dir "$data" >/var/log/peapod.log 2>&1 &
for _ in $(seq 100); do
    [ -f "$data/kubeconfig" ] && break
    sleep 0.1
done
export KUBECONFIG="$data/kubeconfig"
until kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.1; done

kubectl apply -f samples/hello/hello.yaml
kubectl get all -n hello
echo
echo "Peapod is running (log: /var/log/peapod.log). Use it with:"
echo "export KUBECONFIG=$KUBECONFIG"
