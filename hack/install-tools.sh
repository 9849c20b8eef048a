#!/usr/bin/env bash
# Installs the test-time tools that are not Python packages, each pinned, each only when missing:
#   - helm, kubeconform, kwok from the Go module proxy (`go install`) into a cache bin folder
#   - prometheus and promtool from Debian's `prometheus` package
# Prints the bin folder that holds the Go tools.
#   CARBON_TOOLS_BIN=DIR   where the Go tools go (default: <repo>/.cache/tools/bin)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARBON_TOOLS_BIN:-$root/.cache/tools/bin}
mkdir -p "$bin"
log() { printf '[install-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# name  module@version  (a stamp file records the version so a pin change reinstalls)
tools=(
  "helm helm.sh/helm/v3/cmd/helm@v3.22.0"
  "kubeconform github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0"
  "kwok sigs.k8s.io/kwok/cmd/kwok@v0.8.0"
)
for entry in "${tools[@]}"; do
  read -r name module <<<"$entry"
  if [[ -x $bin/$name && "$(cat "$bin/.$name.version" 2>/dev/null)" == "$module" ]]; then continue; fi
  log "go install $module"
  GOBIN=$bin go install -trimpath "$module"
  echo "$module" >"$bin/.$name.version"
done

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  log "apt-get install prometheus (Debian's package: prometheus and promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends prometheus >&2
  # The package starts a system Prometheus on :9090; the tests start their own on free ports.
  (systemctl disable --now prometheus || service prometheus stop || true) >/dev/null 2>&1
fi
log "tools ready in $bin"
echo "$bin"
