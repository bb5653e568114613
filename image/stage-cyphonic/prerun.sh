#!/bin/bash -e
# pi-gen convention: a stage starts from a copy of the previous stage's root.
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
