#!/bin/sh
# SPDX-License-Identifier: MIT
#
# make demo: the whole story on a machine with no Xen, each step printed as
# a user would type it.  A qcow2 over a raw backing file; tapctld; the disk
# created with an NBD export (and a FUSE one where the tapdisk has it); a
# verified load over the blkif ring; the backing data read back over NBD;
# as root, ext4 on the FUSE file through a loop device; pause, an internal
# snapshot, unpause; statistics; destroy; qemu-img check.
# Usage: tests/demo.sh BUILD_DIR
set -eu

build=${1:?usage: tests/demo.sh BUILD_DIR}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
PATH=$build/bin:$PATH
export PATH
demo=$build/demo
secs=${QTAP_DEMO_SECONDS:-3}
TAPCTLD_SOCKET=$demo/tapctld.sock
export TAPCTLD_SOCKET

# Print a command the way a user would type it (quoting words with
# spaces), then run it.
run() {
	line="$"
	for word in "$@"; do
		case $word in
		*" "* | *"'"*) line="$line \"$word\"" ;;
		*) line="$line $word" ;;
		esac
	done
	printf '%s\n' "$line"
	"$@"
}

step() { printf '\n== %s\n' "$*"; }

has_cmd() { grep -qaF "$1" "$build/bin/tapdisk"; }

minor=""
mnt=""
loopdev=""
made_fs=""
cleanup() {
	set +e
	[ -n "$mnt" ] && umount "$mnt" 2>/dev/null
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ -n "$minor" ] && tap-ctl destroy -m "$minor" >/dev/null 2>&1
	[ -f "$demo/tapctld.pid" ] && kill "$(cat "$demo/tapctld.pid")" 2>/dev/null
}
trap cleanup EXIT

rm -rf "$demo"
mkdir -p "$demo"
cd "$demo"

step "A 256 MiB raw base image with data at 128 MiB, and a qcow2 over it"
run tap-img create -f raw base.raw 256M
run tap-img io -f raw -c 'write -P 0x5a 128M 16M' base.raw
run tap-img create -f qcow2 -b base.raw -F raw vm.qcow2
run tap-img info vm.qcow2

step "Start the control daemon (it returns once its socket answers)"
run tapctld -S "$TAPCTLD_SOCKET" --state-dir "$demo/run" --no-xen --pid-file "$demo/tapctld.pid"

step "Serve the disk: one tapdisk, exported over NBD$(has_cmd fuse-add && echo ' and FUSE')"
set -- create -a qcow2:vm.qcow2 --nbd "unix:$demo/vm.nbd"
if has_cmd fuse-add; then
	: >vm.img
	set -- "$@" --fuse "$demo/vm.img"
fi
printf '$ minor=$(tap-ctl %s)\n' "$*"
minor=$(tap-ctl "$@")
echo "minor $minor"
run tap-ctl list

step "A blkif frontend on the local ring transport: ${secs}s of verified random I/O"
run tap-front -m "$minor" --rw randrw --bs 4k --qd 16 --runtime "$secs" --span 64M --verify \
	--seed 42 --flush

if command -v qemu-io >/dev/null 2>&1; then
	step "QEMU reads the backing file's data through the overlay, over NBD"
	run qemu-io -r -f raw -c 'read -P 0x5a 136M 1M' "nbd+unix:///?socket=$demo/vm.nbd"
fi

step "A filesystem on the disk: ext4 on the FUSE file through a loop device"
if [ "$(id -u)" -ne 0 ]; then
	echo "(skipped: needs root for the loop device and mount)"
elif ! has_cmd fuse-add; then
	echo "(skipped: this tapdisk has no FUSE export yet)"
else
	loopdev=$(losetup -f --show --direct-io=on vm.img 2>/dev/null || losetup -f --show vm.img)
	echo "\$ losetup -f --show --direct-io=on vm.img"
	echo "$loopdev"
	run mkfs.ext4 -q -E nodiscard "$loopdev"
	mnt=$demo/mnt
	mkdir -p "$mnt"
	run mount "$loopdev" "$mnt"
	run cp -r "$(dirname "$build")/docs" "$mnt/"
	run sync
	run ls "$mnt/docs"
	run umount "$mnt"
	mnt=""
	run fsck.ext4 -fn "$loopdev"
	run losetup -d "$loopdev"
	loopdev=""
	made_fs=1
fi

step "Pause (drain, flush, release the image's locks), snapshot with qemu-img, unpause"
run tap-ctl pause -m "$minor"
run qemu-img snapshot -c demo-snapshot vm.qcow2
run tap-ctl unpause -m "$minor"
if [ -n "$made_fs" ]; then
	echo "(the filesystem is still there, through the FUSE file)"
	loopdev=$(losetup -f --show -r vm.img)
	echo "\$ losetup -f --show -r vm.img"
	echo "$loopdev"
	run fsck.ext4 -fn "$loopdev"
	run losetup -d "$loopdev"
	loopdev=""
else
	run tap-front -m "$minor" --rw randread --bs 64k --indirect 16 --qd 8 --ops 200
fi

step "What the tapdisk did"
if command -v jq >/dev/null 2>&1; then
	printf '$ tap-ctl stats -m %s | jq ...\n' "$minor"
	tap-ctl stats -m "$minor" | jq -c '{minor, state, spec, size: .image.size,
		reads: .tapdisk.ops.read.count, writes: .tapdisk.ops.write.count,
		flushes: .tapdisk.ops.flush.count, write_p99_ns: .tapdisk.ops.write.latency_ns.p99}'
else
	run tap-ctl stats -m "$minor"
fi

step "Destroy the disk, stop the daemon, and check the image with QEMU's tools"
run tap-ctl destroy -m "$minor"
minor=""
printf '$ kill %s\n' "$(cat "$demo/tapctld.pid")"
kill "$(cat "$demo/tapctld.pid")"
run qemu-img check vm.qcow2
run qemu-img snapshot -l vm.qcow2
echo
echo "Next: tap-ctl --help, docs/xen.md (serving a Xen guest), tap-front --help."
