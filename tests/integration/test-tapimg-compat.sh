#!/bin/sh
# SPDX-License-Identifier: MIT
#
# blktap's old tool names, qcow-create, img2qcow and qcow2raw (tap-img
# under those names), with their old arguments: the images they make are
# qcow2 images qemu-img checks clean and reads back equal.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq

cd "$TEST_DIR"
for name in qcow-create img2qcow qcow2raw; do
	[ -x "$BIN/$name" ] || die "$BIN/$name is not built"
done

"$BIN/qcow-create" 16 base.qcow2 || die "qcow-create failed"
[ "$(qemu-img info --output=json base.qcow2 | jq -r '.["virtual-size"]')" = 16777216 ] ||
	die "qcow-create: not 16 MiB"
qemu-img check -q base.qcow2 || die "qcow-create: not clean"
"$BIN/qcow-create" -r 2 full.qcow2 || die "qcow-create -r failed"
[ "$(du -k full.qcow2 | cut -f1)" -ge 2048 ] || die "qcow-create -r did not allocate"
qemu-img check -q full.qcow2 || die "qcow-create -r: not clean"
"$BIN/qcow-create" 16 over.qcow2 base.qcow2 || die "qcow-create with a backing file failed"
qemu-img info over.qcow2 | grep -q 'backing file format: qcow2' || die "no backing format"

qemu-img create -q -f raw disk.raw 8M
qemu-io -f raw -c 'write -P 0x5a 1M 1M' -c 'write -P 0xa5 7M 4k' disk.raw >/dev/null
"$BIN/img2qcow" disk.qcow2 disk.raw >/dev/null || die "img2qcow failed"
qemu-img check -q disk.qcow2 || die "img2qcow: not clean"
qemu-img compare -q -f raw -F qcow2 disk.raw disk.qcow2 || die "img2qcow: differs"
"$BIN/qcow2raw" back.raw disk.qcow2 >/dev/null || die "qcow2raw failed"
cmp disk.raw back.raw || die "qcow2raw: differs"

"$BIN/img2qcow" only-one.qcow2 2>/dev/null && die "img2qcow with one argument succeeded"
"$BIN/qcow-create" 2>/dev/null && die "qcow-create without arguments succeeded"
"$BIN/qcow-create" -h | grep -q 'usage: qcow-create' || die "qcow-create -h"
exit 0
