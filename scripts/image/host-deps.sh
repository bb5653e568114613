#!/usr/bin/env bash
# Installs the Debian packages that the image test and the image build need on
# the build machine, and makes sure the kernel runs arm64 programs through
# qemu-user (binfmt_misc), which debootstrap's second stage and chroot need.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=host-deps
image_require_root

packages=(
  # arm64 programs in a chroot, and the emulated machine
  qemu-user-static binfmt-support qemu-system-arm
  # root file system and disk image without loop devices
  debootstrap debian-archive-keyring dosfstools mtools e2fsprogs fdisk libcap2-bin
  # the lab around the virtual machine: udhcpd on its WAN, udhcpc on the general node
  iproute2 nftables iputils-ping busybox udhcpc util-linux
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  image_log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Containers and machines without systemd do not mount binfmt_misc, and
# binfmt-support then cannot register qemu-aarch64 when it is installed.
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  image_log "mounting binfmt_misc"
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  image_log "enabling qemu-aarch64 in binfmt_misc"
  update-binfmts --enable qemu-aarch64
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  image_die "qemu-aarch64 is not enabled in binfmt_misc; check 'update-binfmts --display qemu-aarch64'"
# The F flag makes the kernel open the interpreter when the entry is
# registered, so it works inside a chroot that lacks the interpreter.
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  image_die "the qemu-aarch64 binfmt entry lacks the F flag, so it cannot run programs inside a chroot; install qemu-user-static"
