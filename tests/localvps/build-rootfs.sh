#!/usr/bin/env bash
# Build the pristine Debian 13 (trixie) root filesystem of the local test VPS, once.
#
# It stands in for Hetzner's debian-13 image: openssh-server, python3 and sudo, nothing of
# ours. The deploy user and its SSH key are added per run to a copy (see vps.py), the way
# cloud-init does on the real server. The result is cached outside git and reused; every
# run boots a fresh copy, so runs never leak state into each other.
#
# Usage: build-rootfs.sh DEST_DIR   (as root; debootstrap uses Debian's default mirror)
set -euo pipefail
dest=${1:?usage: build-rootfs.sh DEST_DIR}
if [ -f "$dest/.localvps-complete" ]; then
  echo "rootfs: cached at $dest"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
start=$SECONDS
tmp="$dest.tmp.$$"
trap 'rm -rf --one-file-system "$tmp"' EXIT
mkdir -p "$(dirname "$dest")"
# dbus and systemd-sysv: what a cloud image boots with (logind, hostnamectl, timedatectl).
debootstrap --include=openssh-server,python3,sudo,dbus,systemd-sysv,ca-certificates,iproute2 \
  trixie "$tmp" >"$tmp.log" 2>&1 || { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# The image's own apt sources: the suite's updates and security like the real image.
mirror=$(sed -n 's/^deb \([^ ]*\) trixie main.*/\1/p' "$tmp/etc/apt/sources.list" | head -1)
security=${mirror%/debian}/debian-security
cat >"$tmp/etc/apt/sources.list" <<SRC
deb $mirror trixie main
deb $mirror trixie-updates main
deb $security trixie-security main
SRC
apt_lists=$tmp/var/lib/apt/lists
rm -rf "${apt_lists:?}"/* "$tmp/var/cache/apt/archives/"*.deb
touch "$tmp/.localvps-complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "rootfs: built $dest in $((SECONDS - start)) s ($(du -sh "$dest" | cut -f1))"
