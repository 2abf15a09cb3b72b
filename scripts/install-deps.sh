#!/usr/bin/env bash
# Installs the Debian packages bgpgw's tests and lab need, if any is missing,
# then verifies what the tests rely on: the programs they run, FRR's daemons
# and every charon plugin the lab's strongswan.conf files load. A missing
# piece stops here with one line naming it, before any test runs.
#
#   scripts/install-deps.sh          install what is missing (as root), then verify
#   scripts/install-deps.sh --check  verify only; install nothing
#
# Needs root when something must be installed; says what is missing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every package the lab uses is named here, also those that are only a
# Recommends of another (libstrongswan-standard-plugins: charon's openssl and
# gcm plugins, without which no aes256gcm16 CHILD_SA is ever installed).
# .ci/run purges exactly these (less the base tools) when CI=true.
lab_packages=(
  frr                                   # on-prem / cloud-side router in the lab
  bird2                                 # the second on-prem BGP implementation (interop)
  strongswan-charon strongswan-swanctl  # IPsec (see shared LAB-FACTS: kernel-libipsec)
  libstrongswan-standard-plugins        # openssl, gcm: only a Recommends of the others
  libcharon-extra-plugins libstrongswan-extra-plugins  # kernel-libipsec
  tcpdump
)
base_packages=(iproute2 nftables iputils-ping util-linux mount procps)

check_only=false
case "${1:-}" in
"") ;;
--check) check_only=true ;;
--lab-packages)
  echo "${lab_packages[*]}"
  exit 0
  ;;
*)
  echo "install-deps: unknown argument '$1' (use --check or --lab-packages)" >&2
  exit 2
  ;;
esac

missing=()
for p in "${lab_packages[@]}" "${base_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ] && ! $check_only; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run as root (make test does this when run as root)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The frr and bird2 packages enable their own services; the lab runs its
  # own instances (bird's packaged one would also hold /run/bird/bird.ctl).
  if command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet frr 2>/dev/null; then
      systemctl stop frr || true
    fi
    for s in "${missing[@]}"; do
      [ "$s" = bird2 ] || continue
      systemctl stop bird >/dev/null 2>&1 || true
      systemctl disable bird >/dev/null 2>&1 || true
    done
  fi
fi

# Verify. Each problem is one "what (package)" item; all go on one line.
problems=()
if $check_only; then
  for p in "${missing[@]}"; do
    problems+=("package $p")
  done
fi
need() { # need PATH PACKAGE
  if [ ! -x "$1" ]; then
    problems+=("$1 (package $2)")
  fi
}
need_cmd() { # need_cmd NAME PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    problems+=("command $1 (package $2)")
  fi
}
for d in zebra bgpd bfdd staticd; do
  need "/usr/lib/frr/$d" frr
done
need_cmd vtysh frr
need_cmd bird bird2
need_cmd birdc bird2
need /usr/lib/ipsec/charon strongswan-charon
need_cmd swanctl strongswan-swanctl
need_cmd ip iproute2
need_cmd nft nftables
need_cmd ping iputils-ping
need_cmd tcpdump tcpdump
for c in nsenter unshare setsid chrt; do
  need_cmd "$c" util-linux
done
need_cmd mount mount
need_cmd pgrep procps

# The charon plugins of every lab strongswan.conf ("load = ..." lines), and
# the package each comes in.
plugin_package() {
  case "$1" in
  openssl | gcm) echo libstrongswan-standard-plugins ;;
  kernel-libipsec) echo libcharon-extra-plugins ;;
  curve25519) echo libstrongswan-extra-plugins ;;
  vici) echo strongswan-swanctl ;;
  updown | socket-default) echo strongswan-libcharon ;;
  *) echo libstrongswan ;;
  esac
}
plugins=$({ grep -h '^[[:space:]]*load = ' test/containerlab/nodes/strongswan.conf internal/lab/charon.go || true; } |
  sed 's/^[[:space:]]*load = //' | tr ' ' '\n' | sed '/^$/d' | sort -u)
[ -n "$plugins" ] || problems+=("no 'load =' line found in the lab's strongswan.conf files")
for p in $plugins; do
  so=/usr/lib/ipsec/plugins/libstrongswan-$p.so
  if [ ! -f "$so" ]; then
    problems+=("charon plugin '$p' ($so, package $(plugin_package "$p"))")
  fi
done

if [ ${#problems[@]} -gt 0 ]; then
  echo "install-deps: missing: $(IFS=';'; echo "${problems[*]}" | sed 's/;/; /g')" >&2
  exit 1
fi
