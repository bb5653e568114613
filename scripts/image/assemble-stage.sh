#!/usr/bin/env bash
# Assembles the pi-gen stage in image/work/stage-cyphonic: a copy of
# image/stage-cyphonic whose 01-cyphonic/files/ gets the bundle, the npm
# packages that the bundle loads at run time (installed for linux-arm64), the
# overlay files with overlay/MANIFEST, and a BUILD line naming the commit.
# Needs dist/cyphonic.cjs and dist/dataplane.cjs (make build), npm, and
# network access to the npm registry for the arm64 binary packages.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=assemble-stage
cd "$IMAGE_REPO_ROOT"

readonly BUNDLE=dist/cyphonic.cjs
# The dataplane worker's bundle, which the daemon forks from the directory of
# cyphonic.cjs. Its external packages are a subset of cyphonic.cjs's.
readonly DATAPLANE_BUNDLE=dist/dataplane.cjs
readonly NPM_ARM64_DIR=$IMAGE_WORK_DIR/npm-linux-arm64
readonly FILES_DIR=$IMAGE_ASSEMBLED_STAGE/01-cyphonic/files

for bundle in "$BUNDLE" "$DATAPLANE_BUNDLE"; do
  [[ -f $bundle ]] || image_die "$bundle is missing; run 'make build' first"
done

# The npm packages for linux-arm64, at the versions of package-lock.json.
# --ignore-scripts skips install scripts, which would build or download
# binaries for this machine's CPU. sodium-native and koffi ship their arm64
# binaries in the npm packages. better-sqlite3 gets no binary, which only the
# cloud services need (it loads its binary when a database is opened).
install_arm64_packages() {
  local stamp=$NPM_ARM64_DIR/.lock-sha256 lock_sum
  lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$lock_sum" && -d $NPM_ARM64_DIR/node_modules ]]; then
    return
  fi
  rm -rf "$NPM_ARM64_DIR"
  mkdir -p "$NPM_ARM64_DIR"
  cp package.json package-lock.json "$NPM_ARM64_DIR/"
  image_log "installing the npm packages for linux-arm64"
  (cd "$NPM_ARM64_DIR" && npm ci --omit=dev --ignore-scripts --os=linux --cpu=arm64 --libc=glibc --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$stamp"
}

# Copies the run-time packages and removes the prebuilt binaries of other
# platforms ("prebuilds/<platform>-<arch>", the layout of prebuildify).
copy_runtime_packages() {
  local modules=$FILES_DIR/node_modules name
  mkdir -p "$modules"
  while read -r name; do
    mkdir -p "$modules/$(dirname "$name")"
    cp -R "$NPM_ARM64_DIR/node_modules/$name" "$modules/$name"
  done < <(node --import tsx scripts/image/runtime-modules.ts "$BUNDLE" "$NPM_ARM64_DIR/node_modules")
  find "$modules" -type d -path '*/prebuilds/*' -prune ! -name linux-arm64 -exec rm -rf {} +
  [[ -f $modules/sodium-native/prebuilds/linux-arm64/sodium-native.node ]] ||
    image_die "sodium-native has no linux-arm64 binary in $modules"
  compgen -G "$modules/@koromix/koffi-linux-arm64/linux_arm64/*.node" >/dev/null ||
    image_die "koffi has no linux-arm64 binary in $modules/@koromix/koffi-linux-arm64"
}

install_arm64_packages
rm -rf "$IMAGE_ASSEMBLED_STAGE"
mkdir -p "$IMAGE_WORK_DIR"
cp -R "$IMAGE_DIR/$IMAGE_STAGE_NAME" "$IMAGE_ASSEMBLED_STAGE"
mkdir -p "$FILES_DIR"
cp "$BUNDLE" "$FILES_DIR/cyphonic.cjs"
cp "$DATAPLANE_BUNDLE" "$FILES_DIR/dataplane.cjs"
cp -R overlay "$FILES_DIR/overlay"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=""
[[ -n $(git status --porcelain 2>/dev/null) ]] && dirty=" with uncommitted changes"
echo "cyphonic-adapter $(node -p 'require("./package.json").version') commit $commit$dirty" >"$FILES_DIR/BUILD"
copy_runtime_packages
image_log "stage assembled in $IMAGE_ASSEMBLED_STAGE ($(du -sh "$FILES_DIR/node_modules" | cut -f1) of npm packages)"
