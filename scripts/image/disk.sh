#!/usr/bin/env bash
# Turns a root file system into a disk image with the layout of pi-gen's
# export-image stage, and uses no loop devices. The MBR has a FAT32 boot
# partition "bootfs" of 512 MiB, which gets the root's /boot/firmware. The
# ext4 root "rootfs" is sized to the files plus 20 % and 200 MiB. Both are
# aligned to 8 MiB. As pi-gen's export does, it points fstab at the
# partitions' PARTUUIDs and empties /etc/machine-id, so systemd makes a new
# one at first boot.
#
# Usage: disk.sh ROOTFS_DIR OUTPUT_DIR
# OUTPUT_DIR receives disk.img, the kernel and initramfs of the root
# (vmlinuz, initrd.img) for QEMU's -kernel and -initrd, and disk.env with the
# partition offsets in bytes and the root's PARTUUID. ROOTFS_DIR is changed:
# its /boot/firmware is emptied into the FAT partition.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE_LOG_TAG=disk
image_require_root

ROOTFS_DIR=$(realpath "${1:?usage: disk.sh ROOTFS_DIR OUTPUT_DIR}")
OUTPUT_DIR=${2:?usage: disk.sh ROOTFS_DIR OUTPUT_DIR}
readonly MIB=$((1024 * 1024))
readonly ALIGN=$((8 * MIB))
readonly BOOT_SIZE=$((512 * MIB))
readonly SECTOR=512

[[ -z $(image_mounts_below "$ROOTFS_DIR") ]] || image_die "$ROOTFS_DIR has file systems mounted below it"
mkdir -p "$OUTPUT_DIR"
OUTPUT_DIR=$(realpath "$OUTPUT_DIR")
readonly DISK=$OUTPUT_DIR/disk.img
readonly BOOT_STAGING=$OUTPUT_DIR/bootfs
rm -rf "$BOOT_STAGING" "$DISK" "$OUTPUT_DIR/boot.img"

round_up() {
  echo $((($1 + ALIGN - 1) / ALIGN * ALIGN))
}

# The kernel and initramfs of the root, for QEMU, which does not run the
# Raspberry Pi's boot firmware.
kernel=$(ls -1 "$ROOTFS_DIR"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$ROOTFS_DIR/boot/initrd.img-${kernel##*/vmlinuz-}
[[ -f $kernel && -f $initrd ]] || image_die "no kernel with initramfs in $ROOTFS_DIR/boot"
cp "$kernel" "$OUTPUT_DIR/vmlinuz"
cp "$initrd" "$OUTPUT_DIR/initrd.img"

# The files of /boot/firmware go to the FAT partition, as pi-gen's export
# copies them, and the root keeps the empty mount point.
mkdir -p "$BOOT_STAGING"
if [[ -d $ROOTFS_DIR/boot/firmware ]]; then
  find "$ROOTFS_DIR/boot/firmware" -mindepth 1 -maxdepth 1 -exec mv -t "$BOOT_STAGING" {} +
fi
mkdir -p "$ROOTFS_DIR/boot/firmware"

root_bytes=$(du -x --apparent-size -s --block-size=1 --exclude var/cache/apt/archives "$ROOTFS_DIR" | cut -f1)
boot_start=$ALIGN
boot_size=$(round_up "$BOOT_SIZE")
root_start=$((boot_start + boot_size))
root_size=$(round_up $((root_bytes + root_bytes / 5 + 200 * MIB)))
disk_size=$((root_start + root_size))
disk_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
root_partuuid=$disk_id-02
boot_partuuid=$disk_id-01

sed -i -e "s/BOOTDEV/PARTUUID=$boot_partuuid/" -e "s/ROOTDEV/PARTUUID=$root_partuuid/" "$ROOTFS_DIR/etc/fstab"
grep -q "PARTUUID=$root_partuuid" "$ROOTFS_DIR/etc/fstab" || image_die "$ROOTFS_DIR/etc/fstab has no ROOTDEV line to replace"
echo uninitialized >"$ROOTFS_DIR/etc/machine-id"
rm -f "$ROOTFS_DIR/var/lib/dbus/machine-id"

truncate -s "$disk_size" "$DISK"
sfdisk --quiet "$DISK" <<SFDISK
label: dos
label-id: 0x$disk_id
unit: sectors
start=$((boot_start / SECTOR)), size=$((boot_size / SECTOR)), type=c
start=$((root_start / SECTOR)), size=$((root_size / SECTOR)), type=83
SFDISK

# mkfs.vfat -C counts 1 KiB blocks. FAT32 with one sector per cluster, as
# pi-gen's export formats a boot partition of 128 MiB or more. Raspberry Pi OS
# names the partition "bootfs" in lowercase, which mkfs.fat warns about.
mkfs.vfat -C -F 32 -s 1 -n bootfs "$OUTPUT_DIR/boot.img" $((boot_size / 1024)) >/dev/null \
  2> >(grep -v 'lowercase labels might not work' >&2)
if [[ -n $(ls -A "$BOOT_STAGING") ]]; then
  mcopy -s -i "$OUTPUT_DIR/boot.img" "$BOOT_STAGING"/* ::/
fi
dd if="$OUTPUT_DIR/boot.img" of="$DISK" bs=1M seek=$((boot_start / MIB)) conv=notrunc,sparse status=none
rm -f "$OUTPUT_DIR/boot.img"

# The same features as pi-gen's export: no huge_file, and no 64bit, which
# older tools for resizing the root cannot handle.
mke2fs -q -F -t ext4 -L rootfs -O ^huge_file,^64bit -d "$ROOTFS_DIR" \
  -E offset="$root_start" "$DISK" "$((root_size / 1024))k"

cat >"$OUTPUT_DIR/disk.env" <<ENV
BOOT_OFFSET=$boot_start
ROOT_OFFSET=$root_start
ROOT_PARTUUID=$root_partuuid
ENV
image_log "disk image $DISK: $((disk_size / MIB)) MiB, root files $((root_bytes / MIB)) MiB"
