#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The FUSE export: the image as one regular file.
#  - It reads as qemu-img convert of the image (cmp), takes unaligned and
#    sub-sector writes, fallocate punch-hole and zero-range, fsync; the
#    qcow2 then passes qemu-img check and equals the reference.
#  - As root (skipped with the reason otherwise, always run in CI): a loop
#    device on the file, mkfs.ext4, mount, a file tree, umount,
#    fsck.ext4 -fn clean, detach, qemu-img check exit 0; and after a
#    restart of tapdisk the file tree reads back the same.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io cmp dd fallocate

[ -c /dev/fuse ] || skip "no /dev/fuse"
base=$(mktmp base.raw)
img=$(mktmp vm.qcow2)
ref=$(mktmp ref.raw)
file=$(mktmp export.img)

fuse_start() { # tapdisk args...
	$VG "$BIN/tapdisk" -f "$@" --fuse "$file" >>"$TD_LOG" 2>&1 &
	TD_PID=$!
	on_exit "kill -9 $TD_PID 2>/dev/null; umount -l '$file' 2>/dev/null"
	deadline=$(($(date +%s) + 120))
	until grep -q " $file fuse" /proc/self/mounts; do
		if ! kill -0 "$TD_PID" 2>/dev/null; then
			grep -q 'cannot mount' "$TD_LOG" && skip "FUSE mounts are not permitted here"
			cat "$TD_LOG" >&2
			die "tapdisk --fuse did not start"
		fi
		[ "$(date +%s)" -lt "$deadline" ] || die "the FUSE export did not appear"
		sleep 0.05
	done
}

qemu-img create -q -f raw "$base" 64M
qemu-io -f raw -c 'write -P 0x5a 0 32M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$img"
qemu-io -f qcow2 -c 'write -P 0x11 1M 1M' -c 'write -z 4M 1M' -c 'write -P 0x22 40M 64k' \
	"$img" >/dev/null
qemu-img convert -f qcow2 -O raw "$img" "$ref"

fuse_start -a "qcow2:$img" -q 2
[ "$(stat -c %s "$file")" = 67108864 ] || die "the file's size is $(stat -c %s "$file")"
cmp "$ref" "$file" || die "the file does not read as the image"

# The same changes to the file and to the reference.
change() { # file
	dd if="$TEST_DIR/rnd" of="$1" bs=5000 seek=12345 oflag=seek_bytes conv=notrunc,fsync \
		status=none
	dd if="$TEST_DIR/rnd" of="$1" bs=4096 seek=2048 conv=notrunc status=none
	dd if="$TEST_DIR/rnd" of="$1" bs=777 count=3 seek=3000 conv=notrunc status=none
	fallocate -p -o 1048676 -l 300000 "$1"
	fallocate -z -o 8M -l 1M "$1"
	fallocate -p -o 16M -l 4M "$1"
}
dd if=/dev/urandom of="$TEST_DIR/rnd" bs=5000 count=1 status=none
change "$file"
change "$ref"
cmp "$ref" "$file" || die "after writes and fallocate the file differs from the reference"
sync "$file"
td_stop "$TD_PID"
grep -q " $file fuse" /proc/self/mounts && die "still mounted after tapdisk exited"
qemu-img check -q "$img" || die "qemu-img check failed"
qemu-img compare -q -f raw -F qcow2 "$ref" "$img" || die "the image differs from the reference"

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: the loop device part needs root"
	echo PASS
	exit 0
fi
requires losetup mkfs.ext4 fsck.ext4 mount umount md5sum
fs=$(mktmp fs.qcow2)
mnt=$(mktmp mnt)
mkdir "$mnt"
qemu-img create -q -f qcow2 "$fs" 256M
img=$fs
fuse_start -a "qcow2:$fs" -q 2
loop=$(losetup -f --show "$file") || skip "no loop device available"
on_exit "umount '$mnt' 2>/dev/null; losetup -d $loop 2>/dev/null"
mkfs.ext4 -q -F "$loop" || die "mkfs.ext4 on the loop device failed"
mount "$loop" "$mnt" || die "mount failed"
cp -r "$TOP/drivers" "$TOP/lib" "$mnt/"
head -c 12M /dev/urandom >"$mnt/random"
(cd "$mnt" && find . -type f ! -name sums -exec md5sum {} + >sums)
umount "$mnt"
fsck.ext4 -fn "$loop" >"$TEST_DIR/fsck.out" 2>&1 || {
	cat "$TEST_DIR/fsck.out" >&2
	die "fsck.ext4 -fn found problems"
}
losetup -d "$loop"
td_stop "$TD_PID"
qemu-img check "$fs" >"$TEST_DIR/check.out" || die "qemu-img check: $(cat "$TEST_DIR/check.out")"

# Again, from a fresh tapdisk: the tree is still there, byte for byte.
fuse_start -a "qcow2:$fs"
loop=$(losetup -f --show -r "$file") || die "losetup failed the second time"
mount -o ro "$loop" "$mnt" || die "mount failed the second time"
(cd "$mnt" && md5sum -c --quiet sums) || die "the file tree changed across a restart"
umount "$mnt"
losetup -d "$loop"
td_stop "$TD_PID"
qemu-img check -q "$fs" || die "qemu-img check failed at the end"
echo PASS
