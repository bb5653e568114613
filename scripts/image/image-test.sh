#!/usr/bin/env bash
# The image test: builds a disk image with the pi-gen stage and boots it in
# QEMU inside a network-namespace lab (test/image/appliance.test.ts). The
# Raspberry Pi's package archive is not needed. Debian trixie for arm64 from
# debootstrap replaces what pi-gen's stage0 to stage2 make, the stage runs on
# it by pi-gen's rules, and Debian's arm64 kernel boots it.
#
# Phases, each timed: host packages, stage assembly, root file system (cached
# in /var/cache/cyphonic-image), stage, disk image, tests (the boot test and
# the tests of the stage runner and of the package selection). Needs root and
# dist/cyphonic.cjs (make build). IMAGE_LAB_PREFIX sets the lab's prefix
# (default imgt1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=image-test
image_require_root
cd "$IMAGE_REPO_ROOT"

readonly TEST_DIR=$IMAGE_WORK_DIR/test
export IMAGE_LAB_PREFIX=${IMAGE_LAB_PREFIX:-imgt1}
export IMAGE_TEST_OUT=$TEST_DIR/out
readonly LOCK_FILE=/run/lock/cyphonic-image-test.lock

# One run at a time: the machine has two cores for one emulated machine, and
# the lab prefix is fixed.
mkdir -p "$(dirname "$LOCK_FILE")"
exec 9>"$LOCK_FILE"
flock -n 9 || image_die "another image test is running (it holds the lock $LOCK_FILE); wait for it to finish"

phase_names=()
phase_seconds=()
phase() {
  local name=$1 start=$SECONDS code=0
  shift
  image_log "phase $name"
  "$@" || code=$?
  phase_names+=("$name")
  phase_seconds+=($((SECONDS - start)))
  return "$code"
}

report() {
  local i
  for i in "${!phase_names[@]}"; do
    printf 'image-test: %-10s %4d s\n' "${phase_names[$i]}" "${phase_seconds[$i]}" >&2
  done
}

cleanup() {
  local code=$?
  report
  image_unmount_chroot "$TEST_DIR/rootfs"
  scripts/lab.sh down "$IMAGE_LAB_PREFIX" || true
  exit "$code"
}
trap cleanup EXIT

# A run that was killed leaves its lab behind, and no other run uses this
# prefix while this one holds the lock.
scripts/lab.sh down "$IMAGE_LAB_PREFIX"

phase host-deps scripts/image/host-deps.sh
phase assemble scripts/image/assemble-stage.sh
phase rootfs scripts/image/rootfs.sh "$TEST_DIR/rootfs"
phase stage scripts/image/run-stage.sh "$IMAGE_ASSEMBLED_STAGE" "$TEST_DIR/rootfs"
phase disk scripts/image/disk.sh "$TEST_DIR/rootfs" "$IMAGE_TEST_OUT"
# The disk image contains the root now, so its 1 GB directory can go.
image_remove_tree "$TEST_DIR/rootfs"
# One test run, so its summary also counts the tests of the stage runner and
# of the package selection. The boot test takes most of the time.
phase test node --import tsx --test --test-concurrency=1 --test-reporter=spec \
  test/image/runtime-modules.test.ts test/image/run-stage.test.ts test/image/appliance.test.ts
