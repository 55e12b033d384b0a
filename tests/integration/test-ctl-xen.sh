#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Xen backend in tapctld, with the real libxenstore and xenstore-*
# tools against tests/tools/fake-xenstored: the toolstack's keys as libxl
# writes them for backendtype=tap (kind vbd3), the block-tap hotplug script
# (when the tapdisk can export over NBD), the handshake up to InitWait with
# the ring limits, a frontend's ring keys reaching the tapdisk, garbage and
# missing keys leaving that device in a clear error state while the daemon
# and the other device carry on, Closing/Closed, and block-tap remove.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires_tapdisk
requires xenstore-read xenstore-write xenstore-rm

XENSTORED_PATH=$TEST_DIR/xenstored.sock
export XENSTORED_PATH
"$BIN/../tests/bin/fake-xenstored" --pidfile "$TEST_DIR/xs.pid" "$XENSTORED_PATH" \
	2>"$TEST_DIR/xenstored.log" &
xs_pid=$!
on_exit "kill $xs_pid 2>/dev/null"
wait_for_path "$TEST_DIR/xs.pid" "$CTL_WAIT" || die "fake-xenstored did not start"

cd "$TEST_DIR"
$TAPIMG create -f qcow2 vm.qcow2 64M >/dev/null
$TAPIMG create -f raw other.raw 16M >/dev/null
start_tapctld --xen
grep -q "xen: watching /local/domain/0/backend/vbd3" tapctld.log || die "no Xen backend"

BE=/local/domain/0/backend/vbd3/5/51712
FE=/local/domain/5/device/vbd/51712
BE2=/local/domain/0/backend/vbd3/6/51712
FE2=/local/domain/6/device/vbd/51712

# xenstore-write takes key value pairs.
put() { # dir key value [key value...]
	_dir=$1
	shift
	while [ $# -ge 2 ]; do
		xenstore-write "$_dir/$1" "$2"
		shift 2
	done
}
get() { xenstore-read "$1" 2>/dev/null || true; }
wait_key() { # path value
	_deadline=$(($(date +%s) + CTL_WAIT))
	until [ "$(get "$1")" = "$2" ]; do
		[ "$(date +%s)" -lt "$_deadline" ] || die "$1 is '$(get "$1")', not '$2'"
		sleep 0.05
	done
}

toolstack_add() { # be fe domid params
	put "$1" frontend "$2" frontend-id "$3" online 1 mode w params "$4" state 1 \
		device-type disk
	put "$2" backend "$1" backend-id 0 state 1 virtual-device 51712
}

# The hotplug script's part: block-tap where the tapdisk can export over
# NBD, else what it would write, by hand.
hotplug() { # be spec
	if tapdisk_has nbd-add; then
		XENBUS_PATH=$1 QTAP_RUN=$TEST_DIR/run QTAP_TAP_CTL=$BIN/tap-ctl \
			sh "$TOP/tools/hotplug/block-tap" add || die "block-tap add failed"
	else
		_m=$($TAPCTL create -a "$2")
		_ctl=$($TAPCTL_Q list --json | jq -r ".disks[] | select(.minor == $_m) | .ctl")
		put "$1" qtap-minor "$_m" physical-device-path "$_ctl" hotplug-status connected
	fi
}

# A device appears: tapctld waits for the hotplug script, then InitWait.
toolstack_add "$BE" "$FE" 5 "qcow2:$TEST_DIR/vm.qcow2"
sleep 0.2
[ "$(get "$BE/state")" = 1 ] || die "InitWait before the hotplug script ran"
hotplug "$BE" "qcow2:$TEST_DIR/vm.qcow2"
wait_key "$BE/state" 2
[ "$(get "$BE/max-ring-page-order")" = 4 ] || die "max-ring-page-order: $(get "$BE/max-ring-page-order")"
[ "$(get "$BE/max-ring-pages")" = 16 ] || die "max-ring-pages"
[ -n "$(get "$BE/multi-queue-max-queues")" ] || die "no multi-queue-max-queues"
[ "$(get "$BE/feature-max-indirect-segments")" = 256 ] || die "feature-max-indirect-segments"
minor=$(get "$BE/qtap-minor")
$TAPCTL_Q list | grep -q "^$minor .*xen=vbd3/5/51712 InitWait" || die "list: $($TAPCTL list)"

# A second device whose frontend writes garbage: error state, clear message.
toolstack_add "$BE2" "$FE2" 6 "aio:$TEST_DIR/other.raw"
hotplug "$BE2" "aio:$TEST_DIR/other.raw"
wait_key "$BE2/state" 2
put "$FE2" ring-ref 12abc event-channel 7 protocol x86_64-abi state 3
wait_key "$BE2/state" 5
get "$BE2/error" | grep -q "ring-ref is '12abc'" || die "error: $(get "$BE2/error")"
grep -q "xen vbd3/6/51712: frontend key ring-ref is '12abc'" tapctld.log || die "not logged"
# ...and recovers when the frontend closes and comes back with a missing key.
put "$FE2" state 6
wait_key "$BE2/state" 6
xenstore-rm "$FE2/event-channel"
put "$FE2" ring-ref 12 state 1
wait_key "$BE2/state" 2
put "$FE2" state 3
wait_key "$BE2/state" 5
get "$BE2/error" | grep -q "event-channel is missing" || die "error: $(get "$BE2/error")"

# The first device's frontend: tap-front as a blkfront doing the handshake
# through xenstore, its rings on the local transport (registered with
# tapctld as local domain 5): Connected with the right keys, then a
# verified load, then Closing and Closed.
if [ -x "$BIN/tap-front" ] && tapdisk_has attach-ring; then
	"$BIN/tap-front" --xenstore "$FE" --rw randrw --bs 4k --qd 8 --ops 2000 --span 16M \
		--verify --flush --seed 3 >front.txt 2>&1 &
	front=$!
	wait_key "$BE/state" 4
	[ "$(get "$BE/sectors")" = 131072 ] || die "sectors: $(get "$BE/sectors")"
	[ "$(get "$BE/sector-size")" = 512 ] || die "sector-size: $(get "$BE/sector-size")"
	[ "$(get "$BE/info")" = 0 ] || die "info: $(get "$BE/info")"
	[ "$(get "$BE/feature-flush-cache")" = 1 ] || die "feature-flush-cache"
	# a qcow2 image frees whole clusters only (64 KiB here)
	[ "$(get "$BE/discard-granularity")" = 65536 ] ||
		die "discard-granularity: $(get "$BE/discard-granularity")"
	[ "$(get "$FE/ring-ref")" != "" ] || die "the frontend wrote no ring-ref"
	# (the load may be over and the device closing by now)
	$TAPCTL_Q list | grep -q "^$minor .*xen=vbd3/5/51712 " || die "list: $($TAPCTL list)"
	wait "$front" || die "the load through the Xen handshake failed: $(cat front.txt)"
	grep -q "0 wrong" front.txt || die "no verification: $(cat front.txt)"
	[ "$(get "$BE/state")" = 6 ] || die "after the frontend closed the backend is $(get "$BE/state")"
	$TAPCTL stats -m "$minor" | jq -e '.tapdisk.ops.write.count > 0' >/dev/null ||
		die "the tapdisk counted no writes"
else
	echo "note: no tap-front here; the frontend's ring keys are written by hand"
	put "$FE" ring-ref 8 event-channel 9 protocol x86_64-abi state 3
	wait_key "$BE/state" 5
	put "$FE" state 6
	wait_key "$BE/state" 6
fi

# The daemon is still up and serving; the second frontend closes.
$TAPCTL list >/dev/null || die "tapctld is gone"
put "$FE2" state 6
wait_key "$BE2/state" 6

# Teardown as the toolstack does it: hotplug remove, then the directories go.
for be in "$BE" "$BE2"; do
	if tapdisk_has nbd-add; then
		XENBUS_PATH=$be QTAP_RUN=$TEST_DIR/run QTAP_TAP_CTL=$BIN/tap-ctl \
			sh "$TOP/tools/hotplug/block-tap" remove || die "block-tap remove failed"
	else
		$TAPCTL destroy -m "$(get "$be/qtap-minor")"
	fi
	xenstore-rm "$be"
done
[ "$($TAPCTL_Q list --json | jq '.disks | length')" = 0 ] || die "disks left: $($TAPCTL list)"

# script=block-tap on a stock xl: kind vbd, Linux blkback served from a loop
# device on the disk's FUSE export (as root, where the tapdisk has FUSE).
if [ "$(id -u)" = 0 ] && tapdisk_has fuse-add && command -v losetup >/dev/null; then
	BE3=/local/domain/0/backend/vbd/7/51712
	toolstack_add "$BE3" /local/domain/7/device/vbd/51712 7 "qcow2:$TEST_DIR/vm.qcow2"
	XENBUS_PATH=$BE3 QTAP_RUN=$TEST_DIR/run QTAP_TAP_CTL=$BIN/tap-ctl \
		sh "$TOP/tools/hotplug/block-tap" add || die "block-tap add (vbd) failed"
	[ "$(get "$BE3/hotplug-status")" = connected ] || die "hotplug-status: $(get "$BE3/hotplug-status")"
	loop=$(get "$BE3/physical-device-path")
	[ -b "$loop" ] || die "physical-device-path '$loop' is not a block device"
	[ "$(get "$BE3/physical-device")" = "$(stat -L -c '%t:%T' "$loop")" ] ||
		die "physical-device $(get "$BE3/physical-device") is not $loop's"
	[ "$(blockdev --getsize64 "$loop")" = 67108864 ] || die "the loop device has the wrong size"
	dd if="$loop" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null || die "cannot read $loop"
	XENBUS_PATH=$BE3 QTAP_RUN=$TEST_DIR/run QTAP_TAP_CTL=$BIN/tap-ctl \
		sh "$TOP/tools/hotplug/block-tap" remove || die "block-tap remove (vbd) failed"
	losetup -a | grep -q "$TEST_DIR/run/" && die "block-tap remove left a loop device"
	[ "$($TAPCTL_Q list --json | jq '.disks | length')" = 0 ] || die "block-tap remove left a disk"
else
	echo "note: block-tap's blkback mode needs root and the FUSE export; not tested"
fi
# A hotplug call with bad input fails clearly, as Xen's scripts do.
rc=0
XENBUS_PATH=/local/domain/0/backend/vbd3/9/51712 sh "$TOP/tools/hotplug/block-tap" add \
	2>err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "no params key" err.txt || die "block-tap with no params: $(cat err.txt)"
[ "$(get /local/domain/0/backend/vbd3/9/51712/hotplug-status)" = error ] ||
	die "block-tap did not write hotplug-status=error"
stop_tapctld
qemu-img check -q vm.qcow2 || die "vm.qcow2 does not check clean"
echo "Xen backend handshake: ok"
