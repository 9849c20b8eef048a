#!/usr/bin/env bash
# Installs the test-time tools that are not Python packages, each pinned, each only when missing:
#   - helm, kubeconform, kwok from the Go module proxy (`go install`) into a cache bin folder
#   - from Debian's packages: prometheus and promtool; docker.io, mmdebstrap, containerd and runc for
#     the image build and the real node (tests/node)
#   - checkov and kubernetes-validate (pinned, from PyPI) in their own venv next to the bin folder:
#     their dependency pins clash with the project's, so they stay out of .venv
#   - offline kubeconform schemas generated from kubernetes-validate (hack/gen-kube-schemas.py)
# Prints the bin folder that holds the Go tools.
#   CARBON_TOOLS_BIN=DIR   where the Go tools go (default: ~/.cache/carbon-aware-scheduler/tools/bin,
#                          outside the work tree so every clone of the repo reuses them)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARBON_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/carbon-aware-scheduler/tools/bin}
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

# Debian packages, by the command each provides:
#   prometheus, promtool         prometheus (the scrape tests)
#   dockerd, mmdebstrap          docker.io, mmdebstrap (the image build: tests/node)
#   containerd, runc, loopback   containerd, runc, containernetworking-plugins (the real node)
declare -A debs=([prometheus]=prometheus [promtool]=prometheus [dockerd]=docker.io [mmdebstrap]=mmdebstrap
                 [containerd]=containerd [ctr]=containerd [runc]=runc
                 [/usr/lib/cni/loopback]=containernetworking-plugins)
missing=()
for cmd in "${!debs[@]}"; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null || missing+=("${debs[$cmd]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # Packages that start a system service (Prometheus on :9090, dockerd, containerd) where an init
  # system runs: the tests start their own, on their own ports and sockets, and stop them by PID.
  for service in prometheus docker containerd; do
    (systemctl disable --now "$service" || service "$service" stop || true) >/dev/null 2>&1
  done
fi
# Python-packaged checkers, pinned; a stamp records the pins so a change reinstalls.
pyvenv=$(dirname "$bin")/pyvenv
py_pins="checkov==3.3.30 kubernetes-validate==1.37.0"
if [[ "$(cat "$pyvenv/.pins" 2>/dev/null)" != "$py_pins" ]]; then
  log "pip install $py_pins (into $pyvenv)"
  python3 -m venv "$pyvenv"
  # shellcheck disable=SC2086  # the pins are words on purpose
  "$pyvenv/bin/pip" install -q --disable-pip-version-check $py_pins >&2
  echo "$py_pins" >"$pyvenv/.pins"
fi
ln -sf "$pyvenv/bin/checkov" "$bin/checkov"

# kubeconform schemas for the Kubernetes minor the manifests target, generated offline.
kube_minor=1.35
schemas=$(dirname "$bin")/kube-schemas
if [[ ! -f $schemas/v$kube_minor.0-standalone-strict/deployment-apps-v1.json ]]; then
  source_dir=$(echo "$pyvenv"/lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema/v$kube_minor.0-local-strict)
  log "generating kubeconform schemas for $kube_minor into $schemas"
  python3 "$root/hack/gen-kube-schemas.py" --out "$schemas" --kube-version "$kube_minor" \
    --from-kubernetes-validate "$source_dir" >&2
fi
log "tools ready in $bin"
echo "$bin"
