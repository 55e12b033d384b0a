#!/bin/sh
# SPDX-License-Identifier: MIT
# make install: the parts beyond binaries (man pages rendered from POD).
# Usage: install-extra.sh DESTDIR PREFIX BUILD
set -eu
destdir=$1 prefix=$2
for pod in docs/*.pod; do
	[ -f "$pod" ] || continue
	name=$(basename "$pod" .pod)           # e.g. tap-img.1
	section=${name##*.}
	mkdir -p "$destdir$prefix/share/man/man$section"
	pod2man --section="$section" --center=qtap --release=qtap "$pod" \
		>"$destdir$prefix/share/man/man$section/$name"
done

# The control plane: systemd unit (ExecStart follows PREFIX) and the Xen
# hotplug script, which an administrator links into /etc/xen/scripts.
mkdir -p "$destdir$prefix/lib/systemd/system" "$destdir$prefix/lib/qtap"
sed "s|/usr/local/bin/|$prefix/bin/|" tools/systemd/tapctld.service \
	>"$destdir$prefix/lib/systemd/system/tapctld.service"
install -m 0755 tools/hotplug/block-tap "$destdir$prefix/lib/qtap/block-tap"

# blktap's old image tool names, dispatched by tap-img on argv[0]
for name in qcow-create img2qcow qcow2raw; do
	ln -sf tap-img "$destdir$prefix/bin/$name"
done
