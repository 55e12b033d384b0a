#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Whole-image copies through the export: qemu-img convert and qemu-img
# compare from the nbd+unix:// URI, and nbdcopy to a file, all equal
# qemu-img convert of the image file itself; the export (-R) refuses
# writes with EPERM.  The image is a qcow2 with
# data, zero clusters, a compressed cluster and holes over a raw backing
# file, so every kind of extent and the sparse read replies are crossed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io nbdcopy cmp python3

base=$(mktmp base.raw)
img=$(mktmp vm.qcow2)
sock=$(mktmp nbd.sock)

qemu-img create -q -f raw "$base" 48M
qemu-io -f raw -c 'write -P 0x5a 0 16M' -c 'write -P 0x5b 40M 1M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$img"
qemu-io -f qcow2 -c 'write -P 0x11 1M 3M' -c 'write -z 8M 2M' -c 'write -P 0x22 20M 64k' \
	-c 'write -c -P 0x33 24M 64k' -c 'write -z 40M 64k' -c 'discard 2M 64k' \
	-c 'write -P 0x44 47M 1M' "$img" >/dev/null

qemu-img convert -f qcow2 -O raw "$img" "$TEST_DIR/want.raw"
td_start "$sock" -a "qcow2:$img" -R --nbd "unix:$sock"
uri=$(nbd_uri "$sock")

qemu-img compare -q -f raw "$uri" "$TEST_DIR/want.raw" || die "qemu-img compare: differs"
qemu-img convert -f raw -O raw "$uri" "$TEST_DIR/convert.raw"
cmp "$TEST_DIR/want.raw" "$TEST_DIR/convert.raw" || die "qemu-img convert from the URI differs"
qemu-img convert -f raw -O qcow2 "$uri" "$TEST_DIR/convert.qcow2"
qemu-img compare -q "$TEST_DIR/want.raw" "$TEST_DIR/convert.qcow2" ||
	die "qemu-img convert -O qcow2 from the URI differs"
nbdcopy "$uri" "$TEST_DIR/nbdcopy.raw"
cmp "$TEST_DIR/want.raw" "$TEST_DIR/nbdcopy.raw" || die "nbdcopy from the URI differs"
# several connections at once (nbdcopy's multi-conn), small requests
nbdcopy --connections=4 --request-size=65536 "$uri" "$TEST_DIR/nbdcopy4.raw"
cmp "$TEST_DIR/want.raw" "$TEST_DIR/nbdcopy4.raw" || die "nbdcopy --connections=4 differs"

# the export is read-only (-R): writes are refused with EPERM
"$PYTHON" "$TOP/tests/integration/nbd-hostile.py" "$sock" --readonly ||
	die "the read-only export took a write"

td_stop "$TD_PID"
qemu-img check -q "$img" || die "qemu-img check failed"
echo PASS
