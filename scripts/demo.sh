#!/usr/bin/env bash
# The demo: builds the namespace lab, starts the cloud, two nodes (cn1 behind
# NAPT, cn2 public) and an adapter (behind its own NAPT) with an unmodified
# device gn on its LAN. gn gets its lease by plain DHCP, resolves cn1 by name
# and pings it; cn1 pings gn back by gn's own name. Everything is torn down
# at the end, also on failure or Ctrl-C.
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
  rm -rf "/etc/netns/${prefix}-cn1" "/etc/netns/${prefix}-cn2" "/etc/netns/${prefix}-gn"
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

step "operator: create adapter ad1 and register the device gn (MAC 02:00:00:00:0a:01) behind it"
$cyphonic admin --state "$work/cloud" node add ad1 --kind adapter 2>/dev/null
$cyphonic admin --state "$work/cloud" general add gn --adapter ad1 --mac 02:00:00:00:0a:01 2>/dev/null
$cyphonic admin --state "$work/cloud" token create ad1 --as-endpoint 198.18.0.10:7400 --out "$work/ad1.token" 2>/dev/null

step "start the adapter: WAN behind NAPT 198.18.0.40, LAN NIC lan0 towards gn"
in_ns adapter $cyphonic adapter --state "$work/ad1" --lan lan0 --token-file "$work/ad1.token" --control "$work/ad1.sock" >"$work/ad1.log" 2>&1 &
pids+=($!)
wait_for "$work/ad1.log" '"adapter ready"' 20
wait_for "$work/ad1.log" '"general node added"' 20

step "gn (an unmodified device): DHCP with busybox udhcpc"
mkdir -p "/etc/netns/${prefix}-gn"
cat >"$work/udhcpc.sh" <<SCRIPT
#!/bin/sh
[ "\$1" = bound ] || exit 0
echo "lease: ip=\$ip subnet=\$subnet router=\$router dns=\$dns mtu=\$mtu domain=\$domain lease=\${lease}s"
ip addr add "\$ip/\$subnet" dev "\$interface"
ip route replace default via "\$router"
echo "nameserver \$dns" >"/etc/netns/${prefix}-gn/resolv.conf"
SCRIPT
chmod +x "$work/udhcpc.sh"
in_ns gn udhcpc -q -f -n -i eth0 -t 10 -T 1 -s "$work/udhcpc.sh" 2>/dev/null

step "gn: dig cn1.cyphonic.internal (the adapter selects a route and builds gn's tunnel)"
in_ns gn dig +short cn1.cyphonic.internal

step "gn: ping cn1 by name"
in_ns gn ping -c 3 -i 0.3 cn1.cyphonic.internal

step "cn1: ping gn by its own name"
in_ns cn1 ping -c 3 -i 0.3 gn.cyphonic.internal

step "cn1: dig cn2.cyphonic.internal"
in_ns cn1 dig +short cn2.cyphonic.internal

step "cn1: ping cn2 by name"
in_ns cn1 ping -c 3 -i 0.3 cn2.cyphonic.internal

step "cn2: ping cn1 by name (cn1 sits behind NAPT)"
in_ns cn2 ping -c 3 -i 0.3 cn1.cyphonic.internal

step "cn1: cyphonic status (gn appears with its own virtual IP)"
$cyphonic status --control "$work/cn1.sock"

step "ad1: cyphonic status (the adapter holds gn's tunnel)"
$cyphonic status --control "$work/ad1.sock"

step "done"
