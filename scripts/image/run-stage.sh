#!/usr/bin/env bash
# Runs a pi-gen stage directory against an existing root file system by
# pi-gen's rules (build.sh of the arm64 branch), so the image test applies the
# same stage scripts that pi-gen runs:
#   - a stage with a SKIP file is left out, prerun.sh runs when executable;
#   - sub-stages (subdirectories without SKIP) run in glob order, and in each
#     the steps NN = 00..99 run in this order: NN-debconf through
#     debconf-set-selections in the chroot, NN-packages-nr through
#     apt-get install --no-install-recommends, NN-packages through
#     apt-get install, NN-run.sh on the build machine when executable (with
#     ROOTFS_DIR and its sub-stage as working directory), NN-run-chroot.sh as
#     standard input of bash -e in the chroot;
#   - the variables of image/config are exported, as build.sh does.
# NN-patches (quilt) is not supported and stops the run.
#
# Usage: run-stage.sh STAGE_DIR ROOTFS_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=run-stage
image_require_root

STAGE_DIR=$(realpath "${1:?usage: run-stage.sh STAGE_DIR ROOTFS_DIR}")
ROOTFS_DIR=$(realpath "${2:?usage: run-stage.sh STAGE_DIR ROOTFS_DIR}")
[[ -d $STAGE_DIR ]] || image_die "stage directory $STAGE_DIR not found"
[[ -x $ROOTFS_DIR/bin/bash ]] || image_die "$ROOTFS_DIR has no /bin/bash: expected a root file system"
STAGE=$(basename "$STAGE_DIR")
STAGE_WORK_DIR=$(dirname "$ROOTFS_DIR")
export STAGE STAGE_DIR STAGE_WORK_DIR ROOTFS_DIR

set -a
# shellcheck source=../../image/config
source "$IMAGE_DIR/config"
set +a

# The functions that pi-gen's scripts/common exports to stage scripts.
log() {
  echo "[$(date +%T)] $*" >&2
}
on_chroot() {
  image_on_chroot "$ROOTFS_DIR" "$@"
}
copy_previous() {
  image_die "copy_previous: the runner starts from an existing root file system, $ROOTFS_DIR"
}
export -f log on_chroot copy_previous image_on_chroot image_mount_chroot image_log image_die

# pi-gen's scripts/remove-comments.sed: comments removed, whitespace collapsed.
package_list() {
  sed -e 's/#.*//' "$1" | tr -s '[:space:]' ' '
}

run_sub_stage() {
  local sub_stage=$1 i packages
  log "Begin $sub_stage"
  pushd "$sub_stage" >/dev/null
  for i in {00..99}; do
    if [[ -f $i-debconf ]]; then
      log "Begin $sub_stage/$i-debconf"
      on_chroot <<DEBCONF
debconf-set-selections <<'SELEOF'
$(cat "$i-debconf")
SELEOF
DEBCONF
    fi
    if [[ -f $i-packages-nr ]]; then
      packages=$(package_list "$i-packages-nr")
      if [[ -n ${packages// /} ]]; then
        log "Begin $sub_stage/$i-packages-nr"
        on_chroot <<<"apt-get -o Acquire::Retries=3 install --no-install-recommends -y $packages"
      fi
    fi
    if [[ -f $i-packages ]]; then
      packages=$(package_list "$i-packages")
      if [[ -n ${packages// /} ]]; then
        log "Begin $sub_stage/$i-packages"
        on_chroot <<<"apt-get -o Acquire::Retries=3 install -y $packages"
      fi
    fi
    if [[ -d $i-patches ]]; then
      image_die "$sub_stage/$i-patches: quilt patches are not supported by this runner"
    fi
    if [[ -x $i-run.sh ]]; then
      log "Begin $sub_stage/$i-run.sh"
      SUB_STAGE_DIR=$sub_stage "./$i-run.sh"
    elif [[ -f $i-run.sh ]]; then
      log "Skip $sub_stage/$i-run.sh (not executable)"
    fi
    if [[ -f $i-run-chroot.sh ]]; then
      log "Begin $sub_stage/$i-run-chroot.sh"
      on_chroot <"$i-run-chroot.sh"
    fi
  done
  popd >/dev/null
  log "End $sub_stage"
}

trap 'image_unmount_chroot "$ROOTFS_DIR"' EXIT
if [[ -f $STAGE_DIR/SKIP ]]; then
  log "Skip $STAGE_DIR (SKIP)"
  exit 0
fi
cd "$STAGE_DIR"
if [[ -x prerun.sh ]]; then
  log "Begin $STAGE_DIR/prerun.sh"
  ./prerun.sh
fi
for sub_stage in "$STAGE_DIR"/*; do
  if [[ -d $sub_stage && ! -f $sub_stage/SKIP ]]; then
    run_sub_stage "$sub_stage"
  fi
done
log "End $STAGE_DIR"
