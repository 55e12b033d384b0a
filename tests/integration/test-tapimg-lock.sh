#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Image locking against QEMU's (OFD locks on bytes 100+ and 200+), both
# ways: an image qtap holds open read-write is refused by qemu-img with its
# usual message, read by qemu-img with -U, and its backing file stays
# usable; an image qemu-nbd serves is refused by tap-img (with the
# permission named) unless -U; the locks go when the process closes the
# image.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-nbd

cd "$TEST_DIR"
qemu-img create -q -f raw base.raw 4M
qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2
qemu-img create -q -f raw plain.raw 4M

pids=""
on_exit 'for p in $pids; do kill $p 2>/dev/null; wait $p 2>/dev/null; done'

# wait_refused FMT IMG: until someone holds the "write" permission lock
# (byte 101) on IMG, 10 s at most.  /proc/locks is read rather than a
# probe tried, since a probe's own locks would refuse the process starting.
wait_refused() {
	_deadline=$(($(date +%s) + 10))
	_ino=$(stat -c %i "$2")
	while ! awk -v ino="$_ino" '$2 == "OFDLCK" { n = split($6, id, ":");
		if (id[n] == ino && $7 <= 101 && $8 >= 101) found = 1 } END { exit !found }' /proc/locks; do
		[ "$(date +%s)" -lt "$_deadline" ] || die "$2 never got locked"
		sleep 0.05
	done
}

# expect_fail MESSAGE CMD...: CMD fails, saying MESSAGE
expect_fail() {
	_msg=$1
	shift
	if "$@" >out.txt 2>&1; then
		die "$* succeeded on a locked image"
	fi
	grep -qF -e "$_msg" out.txt || die "$*: expected '$_msg', got: $(cat out.txt)"
}

# ---- qtap holds the images --------------------------------------------------------
for spec in "qcow2 top.qcow2" "raw plain.raw"; do
	set -- $spec
	$BIN/tap-img io -f "$1" -c 'write -P 0x5a 0 64k' -c flush -c 'sleep 60000' "$2" >/dev/null &
	pid=$!
	pids="$pids $pid"
	wait_refused "$1" "$2"
	expect_fail "Failed to get shared \"write\" lock" qemu-img convert -f "$1" "$2" probe.raw
	expect_fail "Is another process using the image [$2]?" qemu-img convert -f "$1" "$2" probe.raw
	expect_fail "Failed to get \"write\" lock" qemu-io -f "$1" -c 'write 0 4k' "$2"
	expect_fail "Failed to get \"write\" lock" $TAPIMG io -f "$1" -c 'read 0 4k' "$2"
	qemu-io -r -U -f "$1" -c 'read -P 0x5a 0 64k' "$2" >/dev/null || die "qemu-io -U refused $2"
	if [ "$1" = qcow2 ]; then
		# qemu-img info shares no write on qcow2 (on raw it takes no lock at all)
		expect_fail "Failed to get shared \"write\" lock" qemu-img info "$2"
		expect_fail "Failed to get \"write\" lock" qemu-img check -r all "$2"
		expect_fail "Failed to get shared \"write\" lock" $TAPIMG info "$2"
		qemu-img info -U "$2" >/dev/null || die "qemu-img info -U refused $2"
	fi
	qemu-img info "base.raw" >/dev/null || die "qemu-img info refused base.raw"
	$TAPIMG info "base.raw" >/dev/null || die "tap-img info refused base.raw"
	$TAPIMG io -f "$1" -r -U -c 'read -P 0x5a 0 64k' "$2" >/dev/null ||
		die "tap-img io -r -U could not read $2"
	if [ "$1" = qcow2 ]; then
		# the backing file is held read-only and shared, as QEMU holds one
		qemu-img info base.raw >/dev/null || die "the backing file is locked"
		qemu-io -r -f raw -c 'read 0 4k' base.raw >/dev/null || die "the backing file is locked"
		expect_fail "Failed to get \"write\" lock" qemu-img commit top.qcow2
	fi
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pids=""
	qemu-io -f "$1" -c 'read -P 0x5a 0 64k' "$2" >/dev/null ||
		die "$2 is still locked after tap-img ended"
done
qemu-img check -q top.qcow2 || die "top.qcow2 is not clean"

# ---- qemu-nbd holds the image --------------------------------------------------------
qemu-nbd -t -f qcow2 -k "$TEST_DIR/nbd.sock" top.qcow2 &
pids=$!
wait_refused qcow2 top.qcow2
expect_fail "Failed to get shared \"write\" lock" $TAPIMG io -f qcow2 -r -c 'read 0 4k' top.qcow2
expect_fail "Failed to get \"write\" lock" $TAPIMG io -f qcow2 -c 'read 0 4k' top.qcow2
expect_fail "Failed to get shared \"write\" lock" $TAPIMG info top.qcow2
expect_fail "Failed to get shared \"write\" lock" $TAPIMG check top.qcow2
expect_fail "Failed to get shared \"write\" lock" $TAPIMG convert -f qcow2 top.qcow2 out.raw
$TAPIMG info -U top.qcow2 >/dev/null || die "tap-img info -U refused"
$TAPIMG check -U top.qcow2 >/dev/null || die "tap-img check -U refused"
$TAPIMG io -f qcow2 -r -U -c 'read -P 0x5a 0 64k' top.qcow2 >/dev/null || die "io -r -U refused"
$TAPIMG convert -U -f qcow2 top.qcow2 out.raw || die "convert -U refused"
# the backing file qemu-nbd reads stays available to a read-only reader
$TAPIMG io -f raw -r -c 'read 0 4k' base.raw >/dev/null || die "base.raw refused while shared"
expect_fail "-U needs -r" $TAPIMG io -U -f qcow2 -c 'read 0 4k' top.qcow2
exit 0
