#!/usr/bin/env bash
# Builds and removes the network-namespace lab that the lab tests and the demo
# run in. Every namespace is named "<prefix>-<host>", so runs with different
# prefixes never share anything.
#
# Topology (IPv4). The internet segment 198.18.0.0/24 is taken from the RFC 2544
# benchmarking range 198.18.0.0/15, and the LAN behind natb uses 192.168.2.0/24.
# Both exist only inside the namespaces this script creates.
#
#   cloud  eth0 198.18.0.10 --+
#   cn2    eth0 198.18.0.20 --+-- inet: bridge br0 198.18.0.1, the default gateway
#   natb   wan0 198.18.0.30 --+
#   natb   lan0 192.168.2.1 (a bridge) -- cn1 eth0 192.168.2.2 and
#          cn4 eth0 192.168.2.4, default route via natb
#   nata   wan0 198.18.0.40 --+
#   nata   lan0 192.168.1.1 ----- adapter wan0 192.168.1.2, default route via nata
#   natc   wan0 198.18.0.50 --+ a second NAPT, LAN 192.168.3.0/24, which cn1
#          can move to (`lab.sh move`), as can the IPv6-only address
#          2001:db8:1::40 on the internet segment
#   cn3    eth0 2001:db8:1::30 (IPv6 only) --+ on the same segment, which
#          also carries IPv6 (2001:db8:1::/64, the documentation prefix):
#          inet 2001:db8:1::1, cloud 2001:db8:1::10, cn2 2001:db8:1::20
#   adapter lan0: a bridge with ports to gn and gn2, no address (the adapter
#          adds its own); gn and gn2 eth0 have no address (they use DHCP)
#
# inet is a Linux bridge with an address, so it switches the segment and can
# later route to more segments (another NAPT LAN, an IPv6 prefix). Only inet
# and natb forward packets. natb translates LAN traffic leaving wan0 with an
# nftables masquerade rule and drops connections opened from the internet side.
#
# All veth pairs are created directly inside the namespaces, so nothing is left
# in the root namespace and deleting the namespaces deletes the veths.
set -euo pipefail

readonly HOSTS=(inet cloud cn2 natb cn1 nata adapter gn gn2 cn3 natc cn4)
readonly NAPT_KINDS=(masquerade random fully-random)
# Owner files let `reap` tell a live run's lab from one left by a crashed run.
readonly OWNER_DIR=/run/cyphonic-lab

readonly NET_INTERNET=198.18.0.0/24
readonly NET_LAN_B=192.168.2.0/24
readonly PREFIXLEN_INTERNET=24
readonly PREFIXLEN_LAN_B=24
readonly ADDR_INET=198.18.0.1
readonly ADDR_CLOUD=198.18.0.10
readonly ADDR_CN2=198.18.0.20
readonly ADDR_NATB_WAN=198.18.0.30
readonly ADDR_NATB_LAN=192.168.2.1
readonly ADDR_CN1=192.168.2.2
readonly ADDR_CN4=192.168.2.4
readonly NET_INTERNET6=2001:db8:1::/64
readonly ADDR6_INET=2001:db8:1::1
readonly ADDR6_CLOUD=2001:db8:1::10
readonly ADDR6_CN2=2001:db8:1::20
readonly ADDR6_CN3=2001:db8:1::30
readonly ADDR_NATC_WAN=198.18.0.50
readonly ADDR_NATC_LAN=192.168.3.1
readonly ADDR_CN1_NATC=192.168.3.2
readonly ADDR6_CN1_MOVED=2001:db8:1::40
readonly NET_LAN_A=192.168.1.0/24
readonly PREFIXLEN_LAN_A=24
readonly ADDR_NATA_WAN=198.18.0.40
readonly ADDR_NATA_LAN=192.168.1.1
readonly ADDR_ADAPTER_WAN=192.168.1.2
# Fixed MACs, so tests can register the general nodes before they boot.
readonly MAC_GN=02:00:00:00:0a:01
readonly MAC_GN2=02:00:00:00:0a:02

# Interface names inside the namespaces (the kernel limit is 15 characters).
readonly IF_HOST=eth0
readonly IF_NATB_WAN=wan0
readonly IF_NATB_LAN=lan0
readonly IF_INET_BRIDGE=br0

usage() {
  cat >&2 <<'EOF'
Usage:
  lab.sh up <prefix> [--napt masquerade|random|fully-random]
      Create the lab and print its namespaces and addresses as KEY=VALUE lines.
      --napt sets natb's port mapping: masquerade keeps the source port when it
      is free (endpoint-independent mapping), random and fully-random pick a new
      port per flow (endpoint-dependent mapping). Default: masquerade.
      LAB_OWNER_PID sets the process whose exit marks the lab as stale
      (default: the caller of lab.sh).
  lab.sh down <prefix>
      Kill the processes inside the lab's namespaces and delete every namespace
      and veth named "<prefix>-*". Does nothing when none exist.
  lab.sh move <prefix> cn1 natb|natc|v6
      Move cn1's link to natb's LAN, natc's LAN or the internet segment with
      an IPv6 address only.
  lab.sh napt <prefix> natb|nata|natc masquerade|random|fully-random
      Change a NAPT router's port mapping while the lab runs.
  lab.sh exec <prefix> <host> <command> [args...]
      Run a command inside "<prefix>-<host>".
  lab.sh reap
      Run `down` for every lab with a generated prefix ("cy" and 4 hex digits)
      whose owner process is gone.
<prefix> is a lowercase letter followed by 1 to 11 lowercase letters or digits,
for example cy3fa0. <host> is one of: inet cloud cn2 natb cn1 nata adapter gn gn2 cn3 natc cn4.
EOF
}

die() {
  echo "lab.sh: $*" >&2
  exit 2
}

log() {
  echo "lab.sh: $*" >&2
}

check_prefix() {
  [[ $1 =~ ^[a-z][a-z0-9]{1,11}$ ]] ||
    die "invalid prefix '$1': expected a lowercase letter followed by 1 to 11 lowercase letters or digits"
}

check_host() {
  local host
  for host in "${HOSTS[@]}"; do
    [[ $1 == "$host" ]] && return 0
  done
  die "unknown host '$1': expected one of ${HOSTS[*]}"
}

require_root() {
  ((EUID == 0)) || die "must run as root, because it creates network namespaces"
}

# Lists the namespaces whose names start with "<prefix>-".
list_lab_namespaces() {
  local prefix=$1 name
  # `ip netns list` prints "name" or "name (id: N)".
  ip netns list | while read -r name _; do
    [[ $name == "$prefix"-* ]] && echo "$name"
  done
  return 0
}

ns() {
  echo "$PREFIX-$1"
}

in_ns() {
  local host=$1
  shift
  ip netns exec "$(ns "$host")" "$@"
}

set_sysctl() {
  local host=$1 key=$2 value=$3
  in_ns "$host" sysctl -q -w "$key=$value"
}

# Creates a veth pair with one end in each namespace and brings both ends up.
add_veth() {
  local host_a=$1 if_a=$2 host_b=$3 if_b=$4
  ip -n "$(ns "$host_a")" link add "$if_a" type veth peer name "$if_b" netns "$(ns "$host_b")"
  ip -n "$(ns "$host_a")" link set "$if_a" up
  ip -n "$(ns "$host_b")" link set "$if_b" up
}

create_namespaces() {
  local host forward
  for host in "${HOSTS[@]}"; do
    ip netns add "$(ns "$host")"
    ip -n "$(ns "$host")" link set lo up
    forward=0
    [[ $host == inet || $host == natb || $host == nata || $host == natc ]] && forward=1
    set_sysctl "$host" net.ipv4.ip_forward "$forward"
  done
}

build_internet() {
  local inet_ns host
  inet_ns=$(ns inet)
  # STP stays off and the forward delay is 0, so ports forward at once.
  ip -n "$inet_ns" link add "$IF_INET_BRIDGE" type bridge stp_state 0 forward_delay 0
  ip -n "$inet_ns" link set "$IF_INET_BRIDGE" up
  ip -n "$inet_ns" addr add "$ADDR_INET/$PREFIXLEN_INTERNET" dev "$IF_INET_BRIDGE"

  for host in cloud cn2; do
    add_veth inet "to-$host" "$host" "$IF_HOST"
    ip -n "$inet_ns" link set "to-$host" master "$IF_INET_BRIDGE"
  done
  add_veth inet to-natb natb "$IF_NATB_WAN"
  ip -n "$inet_ns" link set to-natb master "$IF_INET_BRIDGE"
  add_veth inet to-nata nata "$IF_NATB_WAN"
  ip -n "$inet_ns" link set to-nata master "$IF_INET_BRIDGE"
  add_veth inet to-natc natc "$IF_NATB_WAN"
  ip -n "$inet_ns" link set to-natc master "$IF_INET_BRIDGE"
  ip -n "$(ns natc)" addr add "$ADDR_NATC_WAN/$PREFIXLEN_INTERNET" dev "$IF_NATB_WAN"
  ip -n "$(ns natc)" route add default via "$ADDR_INET"

  ip -n "$(ns cloud)" addr add "$ADDR_CLOUD/$PREFIXLEN_INTERNET" dev "$IF_HOST"
  ip -n "$(ns cloud)" route add default via "$ADDR_INET"
  ip -n "$(ns cn2)" addr add "$ADDR_CN2/$PREFIXLEN_INTERNET" dev "$IF_HOST"
  ip -n "$(ns cn2)" route add default via "$ADDR_INET"
  ip -n "$(ns natb)" addr add "$ADDR_NATB_WAN/$PREFIXLEN_INTERNET" dev "$IF_NATB_WAN"
  ip -n "$(ns natb)" route add default via "$ADDR_INET"
  ip -n "$(ns nata)" addr add "$ADDR_NATA_WAN/$PREFIXLEN_INTERNET" dev "$IF_NATB_WAN"
  ip -n "$(ns nata)" route add default via "$ADDR_INET"
  build_internet6
}

# IPv6 on the same segment: cloud and cn2 are dual-stack, cn3 has IPv6 only.
# nodad skips duplicate address detection, which would keep each address
# unusable for a second or two on a segment where no duplicate can exist.
build_internet6() {
  local inet_ns host
  inet_ns=$(ns inet)
  add_veth inet to-cn3 cn3 "$IF_HOST"
  ip -n "$inet_ns" link set to-cn3 master "$IF_INET_BRIDGE"
  in_ns inet sysctl -q -w net.ipv6.conf.all.forwarding=1
  ip -n "$inet_ns" addr add "$ADDR6_INET/64" dev "$IF_INET_BRIDGE" nodad
  ip -n "$(ns cloud)" addr add "$ADDR6_CLOUD/64" dev "$IF_HOST" nodad
  ip -n "$(ns cn2)" addr add "$ADDR6_CN2/64" dev "$IF_HOST" nodad
  ip -n "$(ns cn3)" addr add "$ADDR6_CN3/64" dev "$IF_HOST" nodad
  for host in cloud cn2 cn3; do
    ip -n "$(ns "$host")" -6 route add default via "$ADDR6_INET"
  done
}

# The adapter sits behind its own NAPT (nata); its LAN is a bridge, the switch
# that the general nodes gn and gn2 plug into.
build_lan_a() {
  add_veth nata "$IF_NATB_LAN" adapter wan0
  ip -n "$(ns nata)" addr add "$ADDR_NATA_LAN/$PREFIXLEN_LAN_A" dev "$IF_NATB_LAN"
  ip -n "$(ns adapter)" addr add "$ADDR_ADAPTER_WAN/$PREFIXLEN_LAN_A" dev wan0
  ip -n "$(ns adapter)" route add default via "$ADDR_NATA_LAN"
  ip -n "$(ns adapter)" link add lan0 type bridge stp_state 0 forward_delay 0
  ip -n "$(ns adapter)" link set lan0 up
  add_veth adapter to-gn gn "$IF_HOST"
  add_veth adapter to-gn2 gn2 "$IF_HOST"
  ip -n "$(ns adapter)" link set to-gn master lan0
  ip -n "$(ns adapter)" link set to-gn2 master lan0
  ip -n "$(ns gn)" link set "$IF_HOST" address "$MAC_GN"
  ip -n "$(ns gn2)" link set "$IF_HOST" address "$MAC_GN2"
}

# natb's LAN is a bridge (the home switch) with cn1 and cn4 on it, so two
# nodes share one NAPT: the same-site case.
build_lan_b() {
  ip -n "$(ns natb)" link add "$IF_NATB_LAN" type bridge stp_state 0 forward_delay 0
  ip -n "$(ns natb)" link set "$IF_NATB_LAN" up
  ip -n "$(ns natb)" addr add "$ADDR_NATB_LAN/$PREFIXLEN_LAN_B" dev "$IF_NATB_LAN"
  plug_into_lan_b cn1 "$ADDR_CN1"
  plug_into_lan_b cn4 "$ADDR_CN4"
}

plug_into_lan_b() {
  local host=$1 address=$2
  add_veth natb "to-$host" "$host" "$IF_HOST"
  ip -n "$(ns natb)" link set "to-$host" master "$IF_NATB_LAN"
  ip -n "$(ns "$host")" addr add "$address/$PREFIXLEN_LAN_B" dev "$IF_HOST"
  ip -n "$(ns "$host")" route add default via "$ADDR_NATB_LAN"
}

# Installs natb's NAPT. Plain masquerade keeps the LAN source port when that
# port is free on the WAN address, so one LAN socket gets the same public port
# for every destination (endpoint-independent mapping, RFC 4787 section 4.1).
# "random" and "fully-random" pick the port per connection instead
# (NF_NAT_RANGE_PROTO_RANDOM and NF_NAT_RANGE_PROTO_RANDOM_FULLY in the kernel).
# The forward chain lets replies back in and drops anything the internet side
# opens towards the LAN, as a home router does.
install_napt() {
  local host=$1 kind=$2 flags=""
  [[ $kind != masquerade ]] && flags=" $kind"
  in_ns "$host" nft -f - <<EOF
table ip cyphonic_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "$IF_NATB_WAN" masquerade$flags
  }
}
table ip cyphonic_filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "$IF_NATB_LAN" oifname "$IF_NATB_WAN" accept
    # Hosts on the LAN talk to each other; with br_netfilter loaded, bridged
    # IPv4 traffic passes this hook too.
    iifname "$IF_NATB_LAN" oifname "$IF_NATB_LAN" accept
  }
  # Unsolicited traffic to the router itself is dropped, as home routers do.
  # It also keeps conntrack from confirming an entry for such a packet, which
  # would take the public port a LAN host's outgoing flow needs next.
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    iifname "$IF_NATB_LAN" accept
    icmp type echo-request accept
  }
}
EOF
}

print_lab() {
  local kind=$1 host key
  echo "PREFIX=$PREFIX"
  for host in "${HOSTS[@]}"; do
    key=${host^^}
    echo "NS_$key=$(ns "$host")"
  done
  echo "NAPT_KIND=$kind"
  echo "NET_INTERNET=$NET_INTERNET"
  echo "NET_LAN_B=$NET_LAN_B"
  echo "ADDR_INET=$ADDR_INET"
  echo "ADDR_CLOUD=$ADDR_CLOUD"
  echo "ADDR_CN2=$ADDR_CN2"
  echo "ADDR_NATB_WAN=$ADDR_NATB_WAN"
  echo "ADDR_NATB_LAN=$ADDR_NATB_LAN"
  echo "ADDR_CN1=$ADDR_CN1"
  echo "IF_INET=$IF_INET_BRIDGE"
  echo "IF_CLOUD=$IF_HOST"
  echo "IF_CN2=$IF_HOST"
  echo "IF_NATB_WAN=$IF_NATB_WAN"
  echo "IF_NATB_LAN=$IF_NATB_LAN"
  echo "IF_CN1=$IF_HOST"
  echo "NET_LAN_A=$NET_LAN_A"
  echo "NET_INTERNET6=$NET_INTERNET6"
  echo "ADDR6_CLOUD=$ADDR6_CLOUD"
  echo "ADDR6_CN2=$ADDR6_CN2"
  echo "ADDR6_CN3=$ADDR6_CN3"
  echo "IF_CN3=$IF_HOST"
  echo "ADDR_NATA_WAN=$ADDR_NATA_WAN"
  echo "ADDR_NATA_LAN=$ADDR_NATA_LAN"
  echo "ADDR_ADAPTER_WAN=$ADDR_ADAPTER_WAN"
  echo "IF_ADAPTER_LAN=lan0"
  echo "IF_ADAPTER_WAN=wan0"
  echo "MAC_GN=$MAC_GN"
  echo "MAC_GN2=$MAC_GN2"
}

cmd_down() {
  local prefix=$1 name pid link
  check_prefix "$prefix"
  require_root
  for name in $(list_lab_namespaces "$prefix"); do
    # A process left inside a namespace keeps it alive after `ip netns del`,
    # so the processes go first. Each was started inside this lab.
    for pid in $(ip netns pids "$name" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$name" 2>/dev/null || log "failed to delete namespace $name"
  done
  # up never creates links in the root namespace, but an interrupted manual
  # setup could leave one, and down promises to remove every "<prefix>-" link.
  for link in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
    if [[ $link == "$prefix"-* ]]; then
      ip link del "$link" 2>/dev/null || log "failed to delete link $link"
    fi
  done
  rm -f "$OWNER_DIR/$prefix.pid"
  return 0
}

cmd_up() {
  local kind=masquerade known=0 candidate
  PREFIX=${1:-}
  [[ -n $PREFIX ]] || {
    usage
    exit 2
  }
  shift
  check_prefix "$PREFIX"
  while (($#)); do
    case $1 in
      --napt)
        (($# >= 2)) || die "--napt needs a value: masquerade, random or fully-random"
        kind=$2
        shift 2
        ;;
      *) die "unknown option '$1' for up" ;;
    esac
  done
  for candidate in "${NAPT_KINDS[@]}"; do
    [[ $kind == "$candidate" ]] && known=1
  done
  ((known)) || die "invalid --napt '$kind': expected masquerade, random or fully-random"
  require_root

  # Checked before the trap is set, so a clash never tears down another run's lab.
  if [[ -n $(list_lab_namespaces "$PREFIX") ]]; then
    die "namespaces with prefix '$PREFIX' already exist; run 'lab.sh down $PREFIX' or pick another prefix"
  fi

  trap 'log "up failed, removing the partial lab"; cmd_down "$PREFIX"' EXIT
  trap 'exit 130' INT TERM

  mkdir -p "$OWNER_DIR"
  echo "${LAB_OWNER_PID:-$PPID}" >"$OWNER_DIR/$PREFIX.pid"
  create_namespaces
  build_internet
  build_lan_b
  build_lan_a
  install_napt natb "$kind"
  install_napt nata masquerade
  install_napt natc masquerade

  trap - EXIT INT TERM
  print_lab "$kind"
}

# Moves cn1's only link elsewhere, as a laptop moves between networks: the
# old veth is deleted and a new one made. Targets: natb (its original LAN),
# natc (another NAPT), v6 (the internet segment with an IPv6 address only).
cmd_move() {
  (($# == 3)) || die "usage: lab.sh move <prefix> cn1 natb|natc|v6"
  PREFIX=$1
  local host=$2 target=$3
  check_prefix "$PREFIX"
  [[ $host == cn1 ]] || die "only cn1 moves, got '$host'"
  require_root
  ip -n "$(ns cn1)" link del "$IF_HOST" 2>/dev/null || true
  ip -n "$(ns inet)" link del to-cn1v6 2>/dev/null || true
  case $target in
    natb)
      plug_into_lan_b cn1 "$ADDR_CN1"
      ;;
    natc)
      ip -n "$(ns natc)" link del "$IF_NATB_LAN" 2>/dev/null || true
      add_veth natc "$IF_NATB_LAN" cn1 "$IF_HOST"
      ip -n "$(ns natc)" addr add "$ADDR_NATC_LAN/24" dev "$IF_NATB_LAN"
      ip -n "$(ns cn1)" addr add "$ADDR_CN1_NATC/24" dev "$IF_HOST"
      ip -n "$(ns cn1)" route add default via "$ADDR_NATC_LAN"
      ;;
    v6)
      add_veth inet to-cn1v6 cn1 "$IF_HOST"
      ip -n "$(ns inet)" link set to-cn1v6 master "$IF_INET_BRIDGE"
      ip -n "$(ns cn1)" addr add "$ADDR6_CN1_MOVED/64" dev "$IF_HOST" nodad
      ip -n "$(ns cn1)" -6 route add default via "$ADDR6_INET"
      ;;
    *) die "unknown move target '$target': expected natb, natc or v6" ;;
  esac
}

# Changes the port mapping of a NAPT router while the lab runs, as when a
# router is replaced: the new rule applies to flows that start afterwards.
cmd_napt() {
  (($# == 3)) || die "usage: lab.sh napt <prefix> natb|nata|natc masquerade|random|fully-random"
  PREFIX=$1
  local router=$2 kind=$3 flags=""
  check_prefix "$PREFIX"
  [[ $router == natb || $router == nata || $router == natc ]] || die "unknown NAPT router '$router'"
  [[ " ${NAPT_KINDS[*]} " == *" $kind "* ]] || die "invalid NAPT kind '$kind': expected masquerade, random or fully-random"
  require_root
  [[ $kind != masquerade ]] && flags=" $kind"
  in_ns "$router" nft -f - <<RULES
flush chain ip cyphonic_nat postrouting
add rule ip cyphonic_nat postrouting oifname "$IF_NATB_WAN" masquerade$flags
RULES
  # Existing mappings keep their ports until they expire; flush them so the
  # new kind applies to the next packet.
  in_ns "$router" conntrack -F >/dev/null 2>&1 || log "conntrack not installed: old mappings stay until they expire"
}

cmd_exec() {
  (($# >= 3)) || {
    usage
    exit 2
  }
  local prefix=$1 host=$2
  shift 2
  check_prefix "$prefix"
  check_host "$host"
  require_root
  exec ip netns exec "$prefix-$host" "$@"
}

# Only prefixes of the form the test harness generates ("cy" and 4 hex digits)
# are reaped, so labs that someone named by hand are left alone.
cmd_reap() {
  require_root
  local prefix owner
  for prefix in $(ip netns list | awk '{ print $1 }' | sed -n 's/^\(cy[0-9a-f]\{4\}\)-\(inet\|cloud\|cn2\|natb\|cn1\|nata\|adapter\|gn\|gn2\|cn3\|natc\|cn4\)$/\1/p' | sort -u); do
    owner=$(cat "$OWNER_DIR/$prefix.pid" 2>/dev/null || true)
    if [[ $owner =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null; then
      continue
    fi
    log "removing stale lab $prefix (owner process ${owner:-unknown} is gone)"
    cmd_down "$prefix"
  done
}

main() {
  local command=${1:-}
  (($#)) && shift
  case $command in
    up) cmd_up "$@" ;;
    down)
      (($# == 1)) || {
        usage
        exit 2
      }
      cmd_down "$1"
      ;;
    exec) cmd_exec "$@" ;;
    move) cmd_move "$@" ;;
    napt) cmd_napt "$@" ;;
    reap) cmd_reap ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
