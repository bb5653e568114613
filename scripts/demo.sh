#!/usr/bin/env bash
# The demo: builds the namespace lab, starts the cloud and two nodes (cn1
# behind NAPT, cn2 public), resolves and pings each by name, shows the
# tunnel status, and tears everything down, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if ((EUID != 0)); then
  echo "demo: needs root, because it creates network namespaces and TUN devices" >&2
  exit 1
fi

readonly cyphonic="node ${PWD}/dist/cyphonic.cjs"
prefix="cy$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
work=$(mktemp -d "/tmp/${prefix}-demo-XXXX")
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/lab.sh down "$prefix" >/dev/null
  rm -rf "/etc/netns/${prefix}-cn1" "/etc/netns/${prefix}-cn2"
  echo "demo: lab ${prefix} removed; logs kept in ${work}"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
in_ns() { local host=$1; shift; ip netns exec "${prefix}-${host}" "$@"; }

wait_for() {
  local file=$1 pattern=$2 seconds=$3
  for ((i = 0; i < seconds * 10; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: timed out waiting for '${pattern}' in ${file}" >&2
  tail -5 "$file" >&2
  return 1
}

step "lab ${prefix}: cloud 198.18.0.10, cn2 198.18.0.20, cn1 192.168.2.2 behind NAPT 198.18.0.30"
scripts/lab.sh up "$prefix" >/dev/null

step "start the cloud (AS, NMS, TRS)"
in_ns cloud $cyphonic cloud --state "$work/cloud" --advertise 198.18.0.10 --control "$work/cloud.sock" >"$work/cloud.log" 2>&1 &
pids+=($!)
wait_for "$work/cloud.log" '"cloud started"' 10

for node in cn1 cn2; do
  step "operator: create ${node} and issue its one-time token"
  $cyphonic admin --state "$work/cloud" node add "$node" 2>/dev/null
  $cyphonic admin --state "$work/cloud" token create "$node" --as-endpoint 198.18.0.10:7400 --out "$work/${node}.token" 2>/dev/null
  step "start ${node}: it redeems the token, registers and brings up its TUN device"
  in_ns "$node" $cyphonic node --state "$work/$node" --token-file "$work/${node}.token" --control "$work/${node}.sock" >"$work/${node}.log" 2>&1 &
  pids+=($!)
  wait_for "$work/${node}.log" '"registered with NMS"' 15
  vip=$($cyphonic admin --state "$work/cloud" node list 2>/dev/null | awk -v n="$node" '$2 ~ "^"n"\\." {print $3}')
  mkdir -p "/etc/netns/${prefix}-${node}"
  echo "nameserver ${vip}" >"/etc/netns/${prefix}-${node}/resolv.conf"
done

step "cn1: dig cn2.cyphonic.internal (route selection and handshake happen here)"
in_ns cn1 dig +short cn2.cyphonic.internal

step "cn1: ping cn2 by name"
in_ns cn1 ping -c 3 -i 0.3 cn2.cyphonic.internal

step "cn2: ping cn1 by name (cn1 sits behind NAPT)"
in_ns cn2 ping -c 3 -i 0.3 cn1.cyphonic.internal

step "cn1: cyphonic status"
$cyphonic status --control "$work/cn1.sock"

step "done"
