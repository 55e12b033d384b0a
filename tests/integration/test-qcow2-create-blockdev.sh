#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tap-img create -f qcow2 on a block device (a loop device over a zeroed
# file): the image is written at the start of the device, which keeps its
# size; the device then holds the bytes qemu-img writes into a file, and
# qemu-img checks it.  Preallocation that needs the file to grow or to be
# allocated is refused, as qemu-img refuses it.
. "$(dirname "$0")/functions.sh"
requires_root
requires losetup qemu-img cmp

backing=$(mktmp disk.img)
ref=$(mktmp ref.qcow2)
copy=$(mktmp copy.qcow2)
truncate -s 64M "$backing"
dev=$(losetup -f --show "$backing") || skip "no loop device available"
on_exit "losetup -d $dev"
[ -b "$dev" ] || die "$dev is not a block device"

for opts in cluster_size=64k cluster_size=4k,refcount_bits=64 compat=v2 \
	preallocation=metadata,cluster_size=16k; do
	dd if=/dev/zero of="$dev" bs=1M count=64 conv=fsync status=none
	$TAPIMG create -q -f qcow2 -o "$opts" "$dev" 40M || die "create -o $opts on $dev failed"
	[ "$(blockdev --getsize64 "$dev")" -eq 67108864 ] || die "the device changed size"
	qemu-img check -q -f qcow2 "$dev" || die "create -o $opts: qemu-img check failed"
	rm -f "$ref"
	qemu-img create -q -f qcow2 -o "$opts" "$ref" 40M
	head -c "$(stat -c %s "$ref")" "$dev" >"$copy"
	cmp "$ref" "$copy" || die "create -o $opts: the device differs from qemu-img's file"
done

# the file cannot grow, nor be allocated
for opts in preallocation=falloc preallocation=full preallocation=metadata; do
	out=$($TAPIMG create -q -f qcow2 -o "$opts" "$dev" 100M 2>&1) &&
		die "create -o $opts of 100M on a 64M device succeeded"
	echo "$out" | grep -q "$dev" || die "create -o $opts: message lacks the device: $out"
done
[ "$(blockdev --getsize64 "$dev")" -eq 67108864 ] || die "the device changed size"
exit 0
