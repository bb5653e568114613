# Shared helpers of the image scripts. Sourcing it defines functions and
# read-only paths and runs nothing.

readonly IMAGE_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly IMAGE_DIR=$IMAGE_REPO_ROOT/image
# Generated files: the assembled stage, the test's root file system and disk
# image, the pi-gen checkout. image/.gitignore keeps them out of git.
readonly IMAGE_WORK_DIR=${IMAGE_WORK_DIR:-$IMAGE_DIR/work}
readonly IMAGE_STAGE_NAME=stage-cyphonic
# The stage with its generated files/ directories, as pi-gen and the test run it.
readonly IMAGE_ASSEMBLED_STAGE=$IMAGE_WORK_DIR/$IMAGE_STAGE_NAME

image_log() {
  echo "${IMAGE_LOG_TAG:-image}: $*" >&2
}

image_die() {
  echo "${IMAGE_LOG_TAG:-image}: $*" >&2
  exit 1
}

image_require_root() {
  ((EUID == 0)) || image_die "must run as root, because it mounts file systems and runs chroot"
}

# Prints the URI of the Debian archive that apt on this machine uses for its
# own release, so debootstrap fetches from the same place. IMAGE_DEBIAN_MIRROR
# overrides it.
image_debian_mirror() {
  if [[ -n ${IMAGE_DEBIAN_MIRROR:-} ]]; then
    echo "$IMAGE_DEBIAN_MIRROR"
    return
  fi
  local codename uri
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || image_die "cannot read VERSION_CODENAME from /etc/os-release; set IMAGE_DEBIAN_MIRROR to the Debian archive URI"
  uri=$(apt-get indextargets --format '$(LABEL) $(CODENAME) $(REPO_URI)' 2>/dev/null |
    awk -v codename="$codename" '$1 == "Debian" && $2 == codename { print $3; exit }')
  [[ -n $uri ]] || image_die "apt has no Debian archive for '$codename' configured (run apt-get update); set IMAGE_DEBIAN_MIRROR to the Debian archive URI"
  echo "${uri%/}"
}

# Lists the mount points at or below $1, deepest first.
image_mounts_below() {
  local dir
  dir=$(realpath -m "$1")
  findmnt -rn -o TARGET | awk -v dir="$dir" '$0 == dir || index($0, dir "/") == 1' | sort -r
}

# Mounts what a chroot needs, as pi-gen's on_chroot does: proc, the host's
# /dev and /dev/pts, /sys, and fresh tmpfs on /run and /tmp.
image_mount_chroot() {
  local root=$1
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
  mountpoint -q "$root/dev/pts" || mount --bind /dev/pts "$root/dev/pts"
  mountpoint -q "$root/sys" || mount --bind /sys "$root/sys"
  mountpoint -q "$root/run" || mount -t tmpfs tmpfs "$root/run"
  mountpoint -q "$root/tmp" || mount -t tmpfs tmpfs "$root/tmp"
}

image_unmount_chroot() {
  local root=$1 target
  [[ -d $root ]] || return 0
  for target in $(image_mounts_below "$root"); do
    umount "$target" || umount --lazy "$target" || image_log "failed to unmount $target"
  done
}

# Deletes a root file system tree. It refuses while anything is mounted below
# it, because a bind-mounted /dev would be deleted along with it.
image_remove_tree() {
  local dir=$1
  [[ -e $dir ]] || return 0
  image_unmount_chroot "$dir"
  [[ -z $(image_mounts_below "$dir") ]] || image_die "refusing to delete $dir: file systems are still mounted below it"
  rm -rf --one-file-system "$dir"
}

# Runs standard input as a bash -e script inside the chroot, as pi-gen's
# on_chroot does. capsh drops CAP_SETFCAP as pi-gen does without SETFCAP=1,
# so packages fall back from file capabilities to setuid bits.
image_on_chroot() {
  local root=$1
  shift
  image_mount_chroot "$root"
  DEBIAN_FRONTEND=noninteractive capsh --drop=cap_setfcap "--chroot=$root/" -- -e "$@"
}
