#!/usr/bin/env bash
# Builds a Debian bookworm root filesystem with python3 (mmdebstrap, from Debian's own mirrors) and
# prints the path of its tarball, for `docker import`. This is how the tests get a base image on
# machines that cannot reach Docker Hub; users keep the Dockerfile's pinned python:*-slim base.
#
# The tarball is cached outside the work tree, keyed by this script's text and the host's extra CA
# certificates (which are copied in so pip inside a build trusts what the host trusts, e.g. a TLS
# proxy's CA). Rebuilt at most once a week so Debian's security updates come in.
#
#   hack/image/build-base.sh        # prints <cache>/base-<key>.tar
#   CARBON_IMAGE_CACHE=DIR           # cache folder (default ~/.cache/carbon-aware-scheduler/images)
set -euo pipefail
cache=${CARBON_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/carbon-aware-scheduler/images}
mkdir -p "$cache"
log() { printf '[build-base %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: apt-get install mmdebstrap"; exit 1; }

packages=python3,python3-venv,python3-pip,ca-certificates
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
week=$(date -u +%G-%V)
key=$( { cat "$0"; echo "$week"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; } |
       sha256sum | cut -c1-16)
out=$cache/base-$key.tar
if [[ -s $out ]]; then
  log "cached: $out"
  echo "$out"; exit 0
fi
# mmdebstrap picks the output format from the name: keep the .tar suffix on the partial file too.
partial=$cache/partial-$key.tar
log "mmdebstrap bookworm ($packages); takes about 90 s"
start=$SECONDS
# --customize-hook runs outside the chroot with the root as $1: copy the host's extra CAs in.
mmdebstrap --variant=minbase --include="$packages" --quiet \
  --customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
      cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/";
      chroot "$1" update-ca-certificates >/dev/null; fi' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$partial" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2
mv "$partial" "$out"
# Older weeks' tarballs are dead weight.
find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$key.tar" -delete
log "built $out ($(du -h "$out" | cut -f1)) in $((SECONDS - start)) s"
echo "$out"
