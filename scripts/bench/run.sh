#!/usr/bin/env bash
# Entry point of `make bench`: installs the packages the benchmark needs and
# runs it. Parameters come from the environment (see scripts/bench/config.ts):
# BENCH_QUICK=1 for a smoke run of a few minutes, BENCH_PREFIX, BENCH_ROUNDS,
# BENCH_CLOUD_NODES, BENCH_PHASES, BENCH_SYSTEMS.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ((EUID != 0)); then
  echo "bench: needs root, because it creates network namespaces and TUN devices" >&2
  exit 1
fi

# The reference tunnels, the load generator and the plotter, from Debian's
# archive; the lab itself needs what scripts/install-deps.sh installs.
packages=(wireguard-go wireguard-tools nebula iperf3 gnuplot-nox iproute2 iputils-ping udhcpc nftables procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The simulators open one UDP socket per simulated node.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec node --import tsx scripts/bench/bench.ts
