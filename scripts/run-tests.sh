#!/usr/bin/env bash
# Runs the unit tests and, as root, the lab tests in one node:test run, one file
# at a time, so the runner's summary (tests, pass, fail) is the last output.
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the lab tests call directly.
readonly LAB_PACKAGES=(iproute2 nftables iputils-ping tcpdump dnsutils iperf3 netcat-openbsd udhcpc isc-dhcp-client busybox wget systemd conntrack)

# Lists test files under $1, sorted. Node 20's --test takes no glob patterns,
# so the files are passed by name.
find_tests() {
  [[ -d $1 ]] || return 0
  find "$1" -type f -name '*.test.ts' | LC_ALL=C sort
}

install_lab_packages() {
  local missing=() package
  for package in "${LAB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "run-tests: installing ${missing[*]} for the lab tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

mapfile -t files < <(find_tests test/unit)

if ((EUID == 0)); then
  install_lab_packages
  # A run that was killed (SIGKILL, a crash of the machine) cannot tear down
  # its labs. reap deletes only labs with the generated prefix whose owner
  # process is gone, so a lab of a run still going on is left alone.
  scripts/lab.sh reap
  mapfile -t lab_files < <(find_tests test/lab)
  files+=("${lab_files[@]}")
else
  echo "run-tests: lab tests skipped: they create network namespaces and need root (running as uid $EUID)"
fi

if ((${#files[@]} == 0)); then
  echo "run-tests: no test files found under test/unit or test/lab" >&2
  exit 1
fi

# Unit tests run the components in-process: keep their info lines out of the report.
export CYPHONIC_LOG_LEVEL=${CYPHONIC_LOG_LEVEL:-warn}
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
