#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The raw driver on a block device (a loop device over a file in the build
# tree): size from BLKGETSIZE64, O_DIRECT I/O, BLKDISCARD and BLKZEROOUT,
# the end of the device enforced, and qemu-io reading the same bytes.
. "$(dirname "$0")/functions.sh"
requires_root
requires losetup qemu-io

backing=$(mktmp disk.img)
truncate -s 64M "$backing"
dev=$(losetup -f --show --direct-io=on "$backing" 2>/dev/null) ||
	dev=$(losetup -f --show "$backing") || skip "no loop device available"
on_exit "losetup -d $dev"
[ -b "$dev" ] || die "$dev is not a block device"

$TAPIMG io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 63M 1M' "$dev" >/dev/null
$TAPIMG io -f raw -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 63M 1M' "$dev" >/dev/null
qemu-io -f raw -r -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 63M 1M' "$dev" |
	grep -q 'read 1048576/1048576 bytes at offset 66060288' || die "qemu-io read differs"

# The device's end comes from the device, not a file size.
if $TAPIMG io -f raw -c 'read 63M 2M' "$dev" >/dev/null 2>&1; then
	die "a read past the end of the device succeeded"
fi

# Zeroing and discard reach the device and read back as zeros.
$TAPIMG io -f raw -c 'write -z 0 512k' -c 'discard 63M 1M' "$dev" >/dev/null
$TAPIMG io -f raw -c 'read -P 0 0 512k' -c 'read -P 0x5a 512k 512k' \
	-c 'read -P 0 63M 1M' "$dev" >/dev/null || die "zeroed or discarded ranges not zero"

# A short verified load through each engine.
for engine in io_uring libaio sync; do
	$TAPIMG bench -f raw -i "$engine" --rw randrw --verify --seed 7 -c 2000 -d 16 -s 4k \
		-q "$dev" || die "bench --verify failed on $engine"
done
echo "raw driver on $dev: ok"
