#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A lazy-refcounts image left dirty by a crashed QEMU (qemu-img check:
# corruptions, exit 2) is repaired by qtap's writable open, as QEMU's own
# writable open repairs it: afterwards the data QEMU wrote reads back, the
# new writes land, the dirty bit is gone and qemu-img check is clean.
# A read-only open leaves the file alone.
. "$(dirname "$0")/functions.sh"
requires qemu-io qemu-img cmp jq

img=$(mktmp lazy.qcow2)
qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=16k "$img" 64M
qemu-io -c 'write -P 0x11 0 4M' -c 'write -P 0x12 20M 300k' -c 'sigraise 9' "$img" \
	>/dev/null 2>&1 || true
rc=0
qemu-img check "$img" >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || skip "qemu-io did not leave a dirty image with stale refcounts"
[ "$(qemu-img info --output=json "$img" | jq '."dirty-flag"')" = true ] ||
	die "qemu-io left no dirty bit"

copy=$(mktmp copy.qcow2)
cp "$img" "$copy"
$TAPIMG io -r -f qcow2 -c 'read -P 0x11 0 4M' "$copy" >/dev/null ||
	die "read-only open of the dirty image failed"
cmp "$img" "$copy" || die "a read-only open changed the dirty image"

out=$($TAPIMG io -f qcow2 -c 'write -P 0x22 8M 1M' -c 'read -P 0x11 0 4M' \
	-c 'read -P 0x12 20M 300k' "$img" 2>&1) || die "writable open of the dirty image: $out"
echo "$out" | grep -q 'dirty bit set: repairing' || die "no repair was announced: $out"
qemu-img check "$img" >/dev/null || die "qemu-img check after the repairing open: $(qemu-img check "$img" 2>&1)"
[ "$(qemu-img info --output=json "$img" | jq '."dirty-flag"')" = false ] ||
	die "the dirty bit is still set"
qemu-io -c 'read -P 0x22 8M 1M' -c 'read -P 0x11 0 4M' "$img" >/dev/null ||
	die "qemu-io does not read back what was written"
