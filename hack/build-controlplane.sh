#!/usr/bin/env bash
# Builds the real etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kubelet used by
# the end-to-end and deploy tests, from the pinned Go modules under hack/controlplane/. Binaries land in a cache folder keyed by a hash of the
# pins, so a second run (or a fresh clone that shares the cache) only checks the hash.
#
#   hack/build-controlplane.sh            # prints the folder holding the five binaries
#   CARBON_E2E_CACHE=DIR hack/...         # cache root (default: <repo>/.cache/controlplane)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache_root=${CARBON_E2E_CACHE:-$root/.cache/controlplane}
# The pinned version of a module: `require mod vX` or `mod vX` inside a `require (...)` block.
pin() { awk -v m="$1" '$1=="require" {$1=""; $0=$0} $1==m && $2 ~ /^v[0-9]/ {print $2; exit}' "$2"; }
k8s_version=$(pin k8s.io/kubernetes "$here/controlplane/k8s/go.mod")
etcd_version=$(pin go.etcd.io/etcd/server/v3 "$here/controlplane/etcd/go.mod")
# An empty version would be stamped into the binaries, and kube-apiserver panics at start on it.
[[ $k8s_version == v1.* && $etcd_version == v3.* ]] ||
  { echo "build-controlplane: cannot read the pins (k8s '$k8s_version', etcd '$etcd_version')" >&2; exit 1; }
key=$(cat "$here"/controlplane/*/go.mod "$here"/controlplane/*/go.sum "$here"/controlplane/*/cmd/*/main.go "$0" \
      <(go version) | sha256sum | cut -c1-16)
out="$cache_root/$key"
log() { printf '[build-controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

k8s_bins=(kube-apiserver kube-scheduler kube-controller-manager kubelet)
have_all=1
for bin in etcd "${k8s_bins[@]}"; do [[ -x $out/$bin ]] || have_all=0; done
if [[ $have_all == 1 ]]; then
  log "cached: kubernetes $k8s_version, etcd $etcd_version in $out"
  echo "$out"; exit 0
fi
mkdir -p "$out.tmp"
minor=${k8s_version#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

# `go build -v` names each package as it compiles it: count them so a cold build shows progress.
build() {  # dir, output, package, ldflags
  local dir=$1 bin=$2 pkg=$3 flags=$4 start=$SECONDS
  log "building $bin (a cold build compiles ~2,000 packages on 2 cores; a warm one only links)"
  (cd "$dir" && go build -v -trimpath -ldflags "$flags" -o "$out.tmp/$bin" "$pkg" 2>&1) |
    awk -v b="$bin" '/^(#|go: |[^ ]+\.go:)/ {print; fflush(); next}
                     {n++; if (n % 200 == 0) {printf "[build-controlplane] %s: %d packages compiled\n", b, n; fflush()}}' >&2
  [[ ${PIPESTATUS[0]} == 0 && -x $out.tmp/$bin ]] || { log "FAILED building $bin"; exit 1; }
  log "built $bin in $((SECONDS - start)) s"
}
build "$here/controlplane/etcd" etcd ./cmd/etcd "-s -w"
for bin in "${k8s_bins[@]}"; do build "$here/controlplane/k8s" "$bin" "./cmd/$bin" "$k8s_ldflags"; done
# Each binary must start and report the pinned version before the cache entry becomes visible.
for bin in "${k8s_bins[@]}"; do
  got=$("$out.tmp/$bin" --version 2>&1) || true
  [[ $got == "Kubernetes $k8s_version" ]] || { log "FAILED: $bin --version says '$got'"; exit 1; }
done
got=$("$out.tmp/etcd" --version 2>&1 | head -1) || true
[[ $got == "etcd Version: ${etcd_version#v}" ]] || { log "FAILED: etcd --version says '$got'"; exit 1; }
rm -rf "$out" && mv "$out.tmp" "$out"
log "done: $("$out/kube-apiserver" --version), $("$out/etcd" --version | head -1)"
echo "$out"
