#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian 12 machine: the Debian
# packages of the lab (namespaces, NAPT, real clients) and the npm packages.
set -euo pipefail

packages=(
  iproute2 nftables iputils-ping iperf3 tcpdump dnsutils netcat-openbsd
  udhcpc isc-dhcp-client busybox wget procps psmisc
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
