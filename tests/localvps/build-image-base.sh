#!/usr/bin/env bash
# Build the base of the local container images once: a minimal Debian 13 tree holding the
# real programs the stack runs (Prometheus, Alertmanager, node exporter, promtool, amtool
# from Debian's packages) and a Python with pip for llm-node's build. Docker Hub is not
# reachable from the test machines; this tarball is `docker import`ed into the local VPS.
#
# Usage: build-image-base.sh DEST.tar   (as root; cached outside git)
set -euo pipefail
dest=${1:?usage: build-image-base.sh DEST.tar}
if [ -f "$dest" ]; then
  echo "image base: cached at $dest"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "image base: debootstrap needs root" >&2; exit 1; }
start=$SECONDS
tmp="$dest.tmp.$$"
trap 'rm -rf --one-file-system "$tmp" "$tmp.tar"' EXIT
mkdir -p "$(dirname "$dest")"
packages=ca-certificates,python3,python3-pip,python3-venv
packages+=,prometheus,prometheus-alertmanager,prometheus-node-exporter
# busybox: the wget the upstream images ship, used by their health checks.
packages+=,busybox
debootstrap --variant=minbase --include="$packages" trixie "$tmp" >"$tmp.log" 2>&1 \
  || { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/archives/*.deb
tar --numeric-owner -C "$tmp" -cf "$tmp.tar" .
mv "$tmp.tar" "$dest"
rm -rf --one-file-system "$tmp"
echo "image base: built $dest in $((SECONDS - start)) s ($(du -h "$dest" | cut -f1))"
