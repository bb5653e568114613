#!/usr/bin/env bash
# Creates the root file system that the image test applies the stage to:
# Debian for arm64 from debootstrap, with the packages of
# test/image/base.packages and of the stage's package lists, and Debian's
# arm64 kernel in place of the Raspberry Pi kernel. The result is cached in
# $IMAGE_CACHE_DIR (default /var/cache/cyphonic-image) under a key made of
# the suite, the archive URI, the package lists and this script, so a second
# run only copies it.
#
# Usage: rootfs.sh DESTINATION
# DESTINATION receives a fresh copy, with the settings that pi-gen's stage1
# and stage2 make from the config (host name, interface names, fstab).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=rootfs
image_require_root

readonly DESTINATION=${1:?usage: rootfs.sh DESTINATION}
readonly CACHE_DIR=${IMAGE_CACHE_DIR:-/var/cache/cyphonic-image}
# Debian trixie ships Node.js 20.19, the oldest version that the bundle's
# package.json accepts. Bookworm's 18 is too old.
readonly SUITE=${IMAGE_SUITE:-trixie}
readonly BASE_PACKAGES=$IMAGE_REPO_ROOT/test/image/base.packages
readonly KERNEL_PACKAGE=linux-image-arm64
# The initramfs gets only these modules (MODULES=list): the default, "most",
# takes more than ten minutes to build under qemu-user. virtio_pci and
# virtio_blk find the disk of QEMU's virt machine, ext4 mounts the root.
readonly INITRAMFS_MODULES=(virtio_pci virtio_blk ext4)
# Cached trees kept besides the one in use, newest first.
readonly CACHE_KEEP=2

# Prints the package names of a pi-gen package list, comments removed, as
# pi-gen's scripts/remove-comments.sed does.
read_package_list() {
  sed -e 's/#.*//' "$1" | tr -s '[:space:]' '\n' | sed '/^$/d'
}

package_list() {
  local file
  {
    read_package_list "$BASE_PACKAGES"
    for file in "$IMAGE_DIR/$IMAGE_STAGE_NAME"/*/[0-9][0-9]-packages-nr "$IMAGE_DIR/$IMAGE_STAGE_NAME"/*/[0-9][0-9]-packages; do
      if [[ -f $file ]]; then
        read_package_list "$file"
      fi
    done
  } | LC_ALL=C sort -u
}

cache_key() {
  {
    echo "suite=$SUITE arch=arm64 mirror=$MIRROR kernel=$KERNEL_PACKAGE modules=${INITRAMFS_MODULES[*]}"
    package_list
    sha256sum "$0" | cut -d' ' -f1
  } | sha256sum | cut -c1-16
}

build_cache() {
  local target=$1 packages partial
  packages=$(package_list | paste -sd, -)
  partial=$target.partial
  image_remove_tree "$partial"
  mkdir -p "$CACHE_DIR"
  image_log "debootstrap $SUITE arm64 from $MIRROR with $packages"
  if ! debootstrap --arch=arm64 --variant=minbase --components=main --include="$packages" \
    "$SUITE" "$partial" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE_DIR/debootstrap.log" >&2
    image_die "debootstrap of $SUITE from $MIRROR failed (log: $CACHE_DIR/debootstrap.log); set IMAGE_SUITE to a suite this archive has, whose nodejs is 20.19 or later"
  fi

  install -m 0644 /dev/stdin "$partial/etc/initramfs-tools/conf.d/cyphonic-image-test.conf" <<<"MODULES=list"
  printf '%s\n' "${INITRAMFS_MODULES[@]}" >>"$partial/etc/initramfs-tools/modules"
  image_log "installing $KERNEL_PACKAGE"
  image_on_chroot "$partial" >"$CACHE_DIR/kernel.log" 2>&1 <<CHROOT || { tail -n 20 "$CACHE_DIR/kernel.log" >&2; image_unmount_chroot "$partial"; image_die "installing $KERNEL_PACKAGE failed (log: $CACHE_DIR/kernel.log)"; }
apt-get update
apt-get install -y --no-install-recommends $KERNEL_PACKAGE
apt-get clean
CHROOT
  image_unmount_chroot "$partial"
  ls "$partial"/boot/vmlinuz-* "$partial"/boot/initrd.img-* >/dev/null || image_die "no kernel or initramfs in $partial/boot"
  package_list >"$partial/.cyphonic-image-packages"
  mv "$partial" "$target"
}

prune_cache() {
  local old
  # ls -t lists the newest first, so the trees after CACHE_KEEP go.
  for old in $(ls -1td "$CACHE_DIR"/rootfs-* 2>/dev/null | grep -v '\.partial$' | tail -n +$((CACHE_KEEP + 1))); do
    image_log "removing old cached root file system $old"
    image_remove_tree "$old"
  done
}

# pi-gen's stage1 writes the host name and turns off predictable interface
# names (raspi-config do_net_names 1 masks 99-default.link), so the NICs keep
# the kernel names eth0 and eth1 that the overlay's profiles use. Its fstab
# names the partitions BOOTDEV and ROOTDEV until the export sets PARTUUIDs.
apply_pi_gen_settings() {
  local root=$1
  # shellcheck source=../../image/config
  TARGET_HOSTNAME=$(source "$IMAGE_DIR/config" && echo "${TARGET_HOSTNAME:?image/config sets no TARGET_HOSTNAME}")
  echo "$TARGET_HOSTNAME" >"$root/etc/hostname"
  printf '127.0.1.1\t\t%s\n' "$TARGET_HOSTNAME" >>"$root/etc/hosts"
  mkdir -p "$root/etc/systemd/network" "$root/boot/firmware"
  ln -sf /dev/null "$root/etc/systemd/network/99-default.link"
  ln -sf /dev/null "$root/etc/systemd/network/73-usb-net-by-mac.link"
  cat >"$root/etc/fstab" <<'FSTAB'
proc            /proc           proc    defaults          0       0
BOOTDEV  /boot/firmware  vfat    defaults          0       2
ROOTDEV  /               ext4    defaults,noatime  0       1
FSTAB
  # stage2 locks root's password. The console offers no login then.
  image_on_chroot "$root" <<<"usermod --pass='*' root"
  image_unmount_chroot "$root"
}

MIRROR=$(image_debian_mirror)
readonly MIRROR
key=$(cache_key)
cached=$CACHE_DIR/rootfs-$key
if [[ -d $cached ]]; then
  image_log "using cached root file system $cached"
  touch "$cached"
else
  build_cache "$cached"
fi
prune_cache

image_remove_tree "$DESTINATION"
mkdir -p "$(dirname "$DESTINATION")"
cp -a "$cached" "$DESTINATION"
rm -f "$DESTINATION/.cyphonic-image-packages"
apply_pi_gen_settings "$DESTINATION"
