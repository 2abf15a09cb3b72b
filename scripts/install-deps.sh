#!/usr/bin/env bash
# Installs the Debian packages bgpgw's tests and lab need, if any is missing.
# Needs root when something must be installed; says what is missing otherwise.
set -euo pipefail

packages=(
  frr                                   # on-prem / cloud-side router in the lab
  strongswan-charon strongswan-swanctl  # IPsec (see shared LAB-FACTS: kernel-libipsec)
  libcharon-extra-plugins libstrongswan-extra-plugins
  iproute2 nftables iputils-ping util-linux procps tcpdump
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}; run as root (make test does this when run as root)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The frr package enables its own service; the lab runs its own instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet frr 2>/dev/null; then
  systemctl stop frr || true
fi
