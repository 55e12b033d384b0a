#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Pause and unpause through tapctld with QEMU's image locks: while a disk
# is served, qemu-img snapshot -c and resize fail on the lock; paused, they
# succeed (and qemu-img commit of a paused overlay into its base);
# unpaused, I/O goes on (a verified tap-front load) and its writes
# leave the snapshot's shared clusters alone (the snapshot still reads what
# was there), the new size is what the tapdisk serves, qemu-img check is
# clean and snapshot -l lists the snapshot.  And qtap refuses an image that
# qemu-nbd serves.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires_tapdisk
requires qemu-img qemu-nbd qemu-io cmp

cd "$TEST_DIR"
$TAPIMG create -f qcow2 vm.qcow2 64M >/dev/null
$TAPIMG io -f qcow2 -c 'write -P 0x11 0 8M' vm.qcow2 >/dev/null
start_tapctld --no-xen
m=$($TAPCTL create -a qcow2:vm.qcow2)

# Served: QEMU's tools refuse, naming the lock.
rc=0
qemu-img snapshot -c s1 vm.qcow2 2>err.txt || rc=$?
[ "$rc" != 0 ] && grep -q 'lock' err.txt || die "snapshot while served: rc $rc, $(cat err.txt)"
rc=0
qemu-img resize vm.qcow2 128M 2>err.txt || rc=$?
[ "$rc" != 0 ] && grep -q 'lock' err.txt || die "resize while served: rc $rc, $(cat err.txt)"

# Paused: the snapshot is taken; unpaused, I/O goes on over the ring.
$TAPCTL pause -m "$m"
qemu-img snapshot -c s1 vm.qcow2 || die "snapshot while paused failed"
$TAPCTL unpause -m "$m"
if [ -x "$BIN/tap-front" ] && tapdisk_has attach-ring; then
	"$BIN/tap-front" -m "$m" --rw randrw --bs 32k --qd 4 --ops 600 --span 8M --verify \
		--flush --seed 5 >load1.txt 2>&1 || die "I/O after unpause failed: $(cat load1.txt)"
	wrote=$(grep -c . load1.txt)
else
	echo "note: no tap-front with ring attach here; no I/O after unpause"
fi

# Paused again: resize; unpaused, the tapdisk serves the new size.
$TAPCTL pause -m "$m"
qemu-img resize vm.qcow2 128M >/dev/null || die "resize while paused failed"
$TAPCTL unpause -m "$m"
size=$($TAPCTL stats -m "$m" | jq .image.size)
[ "$size" = 134217728 ] || die "after resize and unpause the disk is $size bytes"
if [ -n "${wrote:-}" ]; then
	"$BIN/tap-front" -m "$m" --rw randwrite --bs 4k --qd 4 --ops 200 --verify \
		--seed 6 >load2.txt 2>&1 || die "I/O on the resized disk failed: $(cat load2.txt)"
fi

# qemu-img commit on a paused overlay: its data goes into the base, and
# the disk (still the overlay, now empty) reads the same after unpause.
$TAPIMG create -f qcow2 base.qcow2 16M >/dev/null
$TAPIMG create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 >/dev/null
$TAPIMG io -f qcow2 -c 'write -P 0x22 0 1M' top.qcow2 >/dev/null
mt=$($TAPCTL create -a qcow2:top.qcow2 --nbd "unix:$TEST_DIR/top.nbd")
$TAPCTL pause -m "$mt"
qemu-img commit -q top.qcow2 || die "commit while paused failed"
$TAPCTL unpause -m "$mt"
if command -v qemu-io >/dev/null 2>&1 && tapdisk_has nbd-add; then
	qemu-io -r -f raw -c 'read -P 0x22 0 1M' "nbd+unix:///?socket=$TEST_DIR/top.nbd" \
		>/dev/null || die "after commit and unpause the disk does not read its data"
fi
$TAPCTL destroy -m "$mt"
qemu-io -r -f qcow2 -c 'read -P 0x22 0 1M' base.qcow2 >/dev/null ||
	die "the commit did not reach the base"
qemu-img check -q base.qcow2 && qemu-img check -q top.qcow2 || die "commit: images not clean"

# qtap refuses an image that qemu-nbd serves.
$TAPIMG create -f qcow2 held.qcow2 16M >/dev/null
qemu-nbd -f qcow2 -t -k "$TEST_DIR/qnbd.sock" held.qcow2 &
qnbd=$!
on_exit "kill $qnbd 2>/dev/null"
wait_for_path "$TEST_DIR/qnbd.sock" "$CTL_WAIT" || die "qemu-nbd did not start"
expect_fail 1 "lock" $TAPCTL create -a qcow2:held.qcow2
kill "$qnbd"
wait "$qnbd" 2>/dev/null || true

$TAPCTL destroy -m "$m"
stop_tapctld
qemu-img check -q vm.qcow2 || die "vm.qcow2 does not check clean"
qemu-img snapshot -l vm.qcow2 | grep -q ' s1 ' || die "snapshot -l: $(qemu-img snapshot -l vm.qcow2)"
# The snapshot still holds what was there when it was taken.
qemu-img convert -f qcow2 -O raw -l snapshot.name=s1 vm.qcow2 s1.raw
head -c 8M /dev/zero | tr '\0' '\021' >ref.raw
cmp -n 8388608 s1.raw ref.raw || die "the snapshot's data changed under later writes"
echo "pause, snapshot, resize, unpause: ok"
