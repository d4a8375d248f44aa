#!/usr/bin/env bash
# Installs what Peapod needs on a fresh Debian machine (run as root), builds
# it, starts a local OCI registry with the sample images (busybox from
# Debian's busybox-static, the Wasm samples), starts `peapod up` with the
# embedded store, and deploys the samples: a busybox web app and a Wasm
# HTTP function. Logs go to /var/log/peapod.log.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y ca-certificates curl build-essential iptables iproute2 \
    busybox-static docker-registry skopeo umoci libseccomp-dev pkg-config
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
rustup target add wasm32-wasip2
if ! command -v kubectl >/dev/null; then
    echo "kubectl is not installed: see https://kubernetes.io/docs/tasks/tools/" >&2
    exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/peapod/target}"
cargo build --release -p peapod
install -m 0755 "$CARGO_TARGET_DIR/release/peapod" /usr/local/bin/peapod

# A registry on loopback holds the sample images.
registry=127.0.0.1:5000
mkdir -p /var/lib/peapod-registry
if ! curl -sf "http://$registry/v2/" >/dev/null; then
    cat >/etc/peapod-registry.yml <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: /var/lib/peapod-registry
http:
  addr: $registry
CONFIG
    nohup docker-registry serve /etc/peapod-registry.yml >/var/log/peapod-registry.log 2>&1 &
    until curl -sf "http://$registry/v2/" >/dev/null; do sleep 0.1; done
fi
tests/images/busybox.sh "$registry"
PEAPOD=peapod samples/wasm/push.sh "$registry"

data=/var/lib/peapod
mkdir -p "$data"
rm -f "$data/kubeconfig"
nohup peapod up --data-dir "$data" --insecure-registry "$registry" >/var/log/peapod.log 2>&1 &
for _ in $(seq 100); do
    [ -f "$data/kubeconfig" ] && break
    sleep 0.1
done
export KUBECONFIG="$data/kubeconfig"
until kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.1; done

sed "s#REGISTRY#$registry#" samples/hello/hello.yaml | kubectl apply -f -
sed "s#REGISTRY#$registry#" samples/wasm/hello-http.yaml | kubectl apply -f -
sed "s#REGISTRY#$registry#" samples/wasm/knative-hello.yaml | kubectl apply -f -
kubectl wait --for=condition=Available --timeout=120s -n hello deployment/hello
kubectl wait --for=condition=Available --timeout=120s deployment/hello-wasm
kubectl get all -A
echo
echo "Try: curl -H 'Host: hello.example.com' http://127.0.0.1/"
echo "     curl -H 'Host: hello.default.example.com' http://127.0.0.1/   (a Knative function: scales to zero after 30 s idle, back on request)"
echo "Peapod is running (log: /var/log/peapod.log). Use it with:"
echo "export KUBECONFIG=$KUBECONFIG"
