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

# better-sqlite3 12, the TUN reader and the test runner need Node.js 20 or
# later. Debian 12's own nodejs package is 18; Debian 13's is 20.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  echo "install-deps: Node.js 20 or later is required (found: $(node --version 2>/dev/null || echo none)); install it, then run this again" >&2
  exit 1
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
