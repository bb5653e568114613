#!/bin/bash -e
# Creates the service users and enables the appliance's units. pi-gen feeds
# this file to bash inside the image's root.

# systemd-sysusers.service of the image runs only after an update of /usr
# (ConditionNeedsUpdate=/etc), so the users are created here.
systemd-sysusers

# Enables and disables the units that /usr/lib/systemd/system-preset/20-cyphonic.preset
# lists, so the image does at build time what its first boot does again.
# Units that this image lacks (systemd-networkd on some releases) are skipped.
sed -n 's/^\(enable\|disable\) //p' /usr/lib/systemd/system-preset/20-cyphonic.preset | while read -r unit; do
	if [ -e "/usr/lib/systemd/system/${unit}" ]; then
		systemctl preset "${unit}"
	fi
done
for unit in cyphonic-firewall.service cyphonic-firstboot.service cyphonic-adapter.service; do
	systemctl is-enabled --quiet "${unit}"
done

# The bundle loads koffi and sodium-native at start, so this fails when a
# linux-arm64 binary is missing or does not load with this Node.js.
node /usr/lib/cyphonic/cyphonic.cjs help >/dev/null
# The worker's bundle is only forked by the running daemon, so here it is
# checked for syntax only.
node --check /usr/lib/cyphonic/dataplane.cjs
node --version
