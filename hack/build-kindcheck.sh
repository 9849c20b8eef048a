#!/usr/bin/env bash
# Builds the two programs that validate manifests/kind/kind-config.yaml without Docker (no kind
# cluster can run on CI's machines): `render`, which writes the kubeadm config the pinned kind
# release writes to each node, and `kubeadm` from k8s.io/kubernetes at the control plane's pin, whose
# `kubeadm config validate --config FILE` then checks it. Pins: hack/kindcheck/go.mod.
# Binaries land in a cache folder keyed by a hash of the module, the render source, this script and
# the Go version, so a second run only checks the hash.
#
#   hack/build-kindcheck.sh              # prints the folder holding `render` and `kubeadm`
#   CARBON_E2E_CACHE=DIR hack/...        # cache root (default: ~/.cache/carbon-aware-scheduler/controlplane)
#
# Why render is built from a scratch copy of kind's module: kind keeps its kubeadm template, its
# patch code and its "write the kubeadm config" action under pkg/cluster/internal, and Go lets only
# packages under sigs.k8s.io/kind/pkg/cluster import them. _render/main.go is therefore compiled as
# package sigs.k8s.io/kind/pkg/cluster/kindcheck: a workspace (go.work, outside the work tree)
# replaces kind by a copy of the module cache's verified v0.31.0 tree, and `-overlay` adds main.go to
# it (Go refuses overlays inside the module cache itself). Nothing of kind is copied into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/kindcheck"
cache_root=${CARBON_E2E_CACHE:-$HOME/.cache/carbon-aware-scheduler/controlplane}
# The pinned version of a module: `require mod vX` or `mod vX` inside a `require (...)` block.
pin() { awk -v m="$1" '$1=="require" {$1=""; $0=$0} $1==m && $2 ~ /^v[0-9]/ {print $2; exit}' "$2"; }
k8s_version=$(pin k8s.io/kubernetes "$mod/go.mod")
kind_version=$(pin sigs.k8s.io/kind "$mod/go.mod")
[[ $k8s_version == v1.* && $kind_version == v0.* ]] ||
  { echo "build-kindcheck: cannot read the pins (k8s '$k8s_version', kind '$kind_version')" >&2; exit 1; }
key=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/_render/main.go" "$0" <(go version) | sha256sum | cut -c1-16)
out="$cache_root/kindcheck-$key"
log() { printf '[build-kindcheck %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x $out/render && -x $out/kubeadm ]]; then
  log "cached: kind $kind_version renderer, kubeadm $k8s_version in $out"
  echo "$out"; exit 0
fi
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
minor=${k8s_version#v1.}; minor=${minor%%.*}
# kubeadm compares a config's kubernetesVersion with its own: it must carry the pinned version.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

# `go build -v` names each package as it compiles it: count them so a cold build shows progress.
build() {  # output, package, ldflags, packages in a cold build (`go list -deps`), extra env...
  local bin=$1 pkg=$2 flags=$3 cold=$4 start=$SECONDS
  shift 4
  log "building $bin (a cold build compiles ~$cold packages; a warm Go build cache only links)"
  (cd "$mod" && env "$@" go build -v -trimpath -ldflags "$flags" -o "$out.tmp/$bin" "$pkg" 2>&1) |
    awk -v b="$bin" '/^(#|go: |[^ ]+\.go:)/ {print; fflush(); next}
                     {n++; if (n % 200 == 0) {printf "[build-kindcheck] %s: %d packages compiled\n", b, n; fflush()}}' >&2
  [[ ${PIPESTATUS[0]} == 0 && -x $out.tmp/$bin ]] || { log "FAILED building $bin"; exit 1; }
  log "built $bin in $((SECONDS - start)) s"
}

(cd "$mod" && GOWORK=off go mod download sigs.k8s.io/kind) >&2 # verified against go.sum on download
kind_dir=$(cd "$mod" && GOWORK=off go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
ws="$out.tmp/src"
mkdir -p "$ws" && cp -r "$kind_dir" "$ws/kind" && chmod -R u+w "$ws/kind"
printf 'go 1.25.0\n\nuse %s\n\nreplace sigs.k8s.io/kind %s => %s\n' "$mod" "$kind_version" "$ws/kind" >"$ws/go.work"
printf '{"Replace":{"%s":"%s"}}\n' "$ws/kind/pkg/cluster/kindcheck/main.go" "$mod/_render/main.go" >"$ws/overlay.json"
build render sigs.k8s.io/kind/pkg/cluster/kindcheck "-s -w" 130 GOWORK="$ws/go.work" GOFLAGS="${GOFLAGS:-} -overlay=$ws/overlay.json"
build kubeadm k8s.io/kubernetes/cmd/kubeadm "$k8s_ldflags" 1,050 GOWORK=off
rm -rf "$ws"

# Both must start (and kubeadm report the pinned version) before the cache entry becomes visible.
got=$("$out.tmp/kubeadm" version -o short 2>&1) || true
[[ $got == "$k8s_version" ]] || { log "FAILED: kubeadm version says '$got'"; exit 1; }
"$out.tmp/render" -h 2>/dev/null || { log "FAILED: render does not start"; exit 1; }
rm -rf "$out" && mv "$out.tmp" "$out"
log "done: kind $kind_version renderer, kubeadm $("$out/kubeadm" version -o short) in $out"
echo "$out"
