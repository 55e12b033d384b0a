#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Writes into a fresh qcow2 image find the file's space allocated ahead of
# them (drivers/qcow2/meta.c, qcow2_mt_grow): while tapdisk serves the
# image the file is longer than its last cluster, and at close it is cut
# back to exactly that (qemu-img check's image end offset), clean, with
# the data written.  A file system without fallocate skips the test.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io jq

img=$(mktmp grow.qcow2)
ref=$(mktmp ref.raw)
sock=$(mktmp nbd.sock)
probe=$(mktmp probe)

fallocate -l 1M "$probe" 2>/dev/null || skip "the file system under $TEST_DIR has no fallocate"
qemu-img create -q -f qcow2 "$img" 64M
qemu-img create -q -f raw "$ref" 64M
end_offset() {
	qemu-img check --output=json "$1" | jq -r '."image-end-offset"'
}
size_of() {
	stat -c %s "$1"
}

td_start "$sock" -a "qcow2:$img" --nbd "unix:$sock"
set -- -c 'write -P 0x11 0 4M' -c 'write -P 0x22 8M 64k' -c 'write -P 0x33 20M 1M'
qemu-io -f raw "$@" "$(nbd_uri "$sock")" >/dev/null || die "writes through NBD failed"
qemu-io -f raw "$@" "$ref" >/dev/null || die "writes to the reference failed"
qemu-io -f raw -c 'read -P 0x33 20M 1M' "$(nbd_uri "$sock")" >/dev/null ||
	die "the last write does not read back through NBD"
serving=$(size_of "$img")
# 5.06 MiB of data clusters after the metadata: the file holds at least 1 MiB more
[ "$serving" -ge $((6 * 1048576)) ] ||
	die "while served, the file is $serving bytes: no space was allocated ahead of the writes"
td_stop "$TD_PID"

closed=$(size_of "$img")
end=$(end_offset "$img")
[ "$closed" -eq "$end" ] ||
	die "after close the file is $closed bytes, its last cluster ends at $end"
[ "$closed" -lt "$serving" ] || die "the file was not cut back at close ($closed bytes)"
qemu-img check -q "$img" || die "qemu-img check failed after close"
qemu-img compare -q "$img" "$ref" || die "the image differs from the reference"
echo "ok: $serving bytes while served, $closed at close = image end offset"
