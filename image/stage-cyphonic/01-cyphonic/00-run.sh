#!/bin/bash -e
# Installs the adapter into the image: the esbuild bundles, the npm packages
# that the bundle loads at run time (with their linux-arm64 binaries), and the
# appliance files of overlay/ with the modes that overlay/MANIFEST gives.
# scripts/image/assemble-stage.sh fills files/ before pi-gen runs this.

for required in files/cyphonic.cjs files/dataplane.cjs files/node_modules files/overlay/MANIFEST files/BUILD; do
	if [ ! -e "${required}" ]; then
		echo "00-run.sh: ${PWD}/${required} is missing; assemble the stage with scripts/image/assemble-stage.sh" >&2
		exit 1
	fi
done

install -d -m 0755 "${ROOTFS_DIR}/usr/lib/cyphonic"
install -m 0755 files/cyphonic.cjs "${ROOTFS_DIR}/usr/lib/cyphonic/cyphonic.cjs"
# The dataplane worker, which the daemon forks with node from the directory of
# cyphonic.cjs. It is not run by hand, so it has no shebang and no x bit.
install -m 0644 files/dataplane.cjs "${ROOTFS_DIR}/usr/lib/cyphonic/dataplane.cjs"
install -m 0644 files/BUILD "${ROOTFS_DIR}/usr/lib/cyphonic/BUILD"
rm -rf "${ROOTFS_DIR}/usr/lib/cyphonic/node_modules"
cp -R files/node_modules "${ROOTFS_DIR}/usr/lib/cyphonic/node_modules"
chown -R root:root "${ROOTFS_DIR}/usr/lib/cyphonic/node_modules"
chmod -R u=rwX,go=rX "${ROOTFS_DIR}/usr/lib/cyphonic/node_modules"
# For the console: `cyphonic status` reads the adapter's default control socket.
ln -sf ../lib/cyphonic/cyphonic.cjs "${ROOTFS_DIR}/usr/bin/cyphonic"

# MANIFEST lines: MODE OWNER:GROUP DESTINATION. Mode "-" marks a file of the
# FAT boot partition, which pi-gen's export copies from /boot/firmware of the
# root and which keeps no modes or owners.
grep -v -e '^#' -e '^[[:space:]]*$' files/overlay/MANIFEST | while read -r mode owner path; do
	if [ "${mode}" = "-" ]; then
		install -D -m 0644 "files/overlay${path}" "${ROOTFS_DIR}${path}"
	else
		install -D -m "${mode}" -o "${owner%:*}" -g "${owner#*:}" "files/overlay${path}" "${ROOTFS_DIR}${path}"
	fi
done

# Which units the first boot enables, and why: see the comments in the file.
install -D -m 0644 files/20-cyphonic.preset "${ROOTFS_DIR}/usr/lib/systemd/system-preset/20-cyphonic.preset"

# cloud-init's network configuration (network-config on the boot partition)
# would add profiles for eth0 and eth1 beside the appliance's own. This file
# turns cloud-init off entirely, and does nothing when it is not installed.
install -D -m 0644 /dev/null "${ROOTFS_DIR}/etc/cloud/cloud-init.disabled"
