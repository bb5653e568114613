#!/usr/bin/env bash
# Builds the SD-card image with pi-gen: fetches pi-gen at a pinned commit of
# its arm64 branch into image/work/pi-gen, adds image/config and the assembled
# stage-cyphonic, and runs pi-gen's build.sh (PI_GEN_MODE=native, the default)
# or build-docker.sh (PI_GEN_MODE=docker). The image lands in
# image/work/pi-gen/deploy/.
#
# Needs network access to the Raspberry Pi and Debian package archives, to
# pi-gen's git repository and to the npm registry. Native builds need root on
# Debian or Ubuntu, where pi-gen's own dependency list (its file "depends") is
# installed with apt-get. Docker builds need a Docker engine and binfmt_misc.
#
# Usage: pi-gen.sh [--prepare]
# --prepare stops after setting up the checkout and prints the build command,
# so the stage and config can be inspected or built by hand.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=pi-gen
cd "$IMAGE_REPO_ROOT"

readonly PI_GEN_REPO=${PI_GEN_REPO:-https://github.com/RPi-Distro/pi-gen.git}
# Head of pi-gen's arm64 branch on 2026-06-16, which builds Debian trixie.
readonly PI_GEN_COMMIT=${PI_GEN_COMMIT:-ca8aeed0ae300c2a89f55ce9617d5f96a27e99e5}
readonly PI_GEN_MODE=${PI_GEN_MODE:-native}
readonly PI_GEN_DIR=$IMAGE_WORK_DIR/pi-gen

fetch_pi_gen() {
  if [[ $(git -C "$PI_GEN_DIR" rev-parse HEAD 2>/dev/null || true) == "$PI_GEN_COMMIT" ]]; then
    image_log "pi-gen $PI_GEN_COMMIT is checked out in $PI_GEN_DIR"
  else
    image_log "fetching pi-gen $PI_GEN_COMMIT from $PI_GEN_REPO"
    mkdir -p "$PI_GEN_DIR"
    git -C "$PI_GEN_DIR" init -q
    git -C "$PI_GEN_DIR" fetch -q --depth 1 "$PI_GEN_REPO" "$PI_GEN_COMMIT"
    git -C "$PI_GEN_DIR" checkout -q --force --detach FETCH_HEAD
  fi
  [[ $(git -C "$PI_GEN_DIR" rev-parse HEAD) == "$PI_GEN_COMMIT" ]] || image_die "$PI_GEN_DIR is not at $PI_GEN_COMMIT"
  # Files from an earlier run (config, the stage, SKIP_IMAGES) go, and pi-gen's
  # work and deploy directories stay, so CONTINUE=1 builds can reuse them.
  git -C "$PI_GEN_DIR" reset -q --hard
  git -C "$PI_GEN_DIR" clean -q -fdx -e /work/ -e /deploy/
}

# pi-gen's "depends" has TOOL[:PACKAGE] lines, and PACKAGE defaults to TOOL.
install_pi_gen_depends() {
  local line tool package missing=()
  while read -r line; do
    [[ -z $line ]] && continue
    tool=${line%%:*}
    package=${line#*:}
    command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
  done <"$PI_GEN_DIR/depends"
  if ((${#missing[@]})); then
    image_log "installing pi-gen's dependencies: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

prepare_only=0
case ${1:-} in
  "") ;;
  --prepare) prepare_only=1 ;;
  *) image_die "unknown argument '$1': expected --prepare or nothing" ;;
esac

case $PI_GEN_MODE in
  native | docker) ;;
  *) image_die "invalid PI_GEN_MODE '$PI_GEN_MODE': expected native or docker" ;;
esac
[[ $IMAGE_REPO_ROOT != *" "* ]] || image_die "pi-gen does not build in a path with spaces: $IMAGE_REPO_ROOT"

scripts/image/assemble-stage.sh
fetch_pi_gen
cp image/config "$PI_GEN_DIR/config"
cp -R "$IMAGE_ASSEMBLED_STAGE" "$PI_GEN_DIR/$IMAGE_STAGE_NAME"
# Only stage-cyphonic is exported: stage2 would export Raspberry Pi OS Lite.
touch "$PI_GEN_DIR/stage2/SKIP_IMAGES"

cd "$PI_GEN_DIR"
if ((prepare_only)); then
  if [[ $PI_GEN_MODE == docker ]]; then
    image_log "prepared; build with: cd $PI_GEN_DIR && ./build-docker.sh"
  else
    image_log "prepared; build with: cd $PI_GEN_DIR && sudo ./build.sh"
  fi
  exit 0
fi
if [[ $PI_GEN_MODE == docker ]]; then
  ./build-docker.sh
else
  image_require_root
  install_pi_gen_depends
  ./build.sh
fi
image_log "images in $PI_GEN_DIR/deploy:"
ls -l "$PI_GEN_DIR/deploy" >&2
