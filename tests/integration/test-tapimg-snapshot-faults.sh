#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img snapshot and commit stopped at every write and every sync: strace
# makes the Nth pwrite64 (or fdatasync) fail with EIO, for every N the
# operation issues, so the image is left as a crash at that point would
# leave it with everything issued before reaching the disk.  Each such
# image must pass qemu-img check with at worst leaks (exit 0 or 3; the
# COPIED flags of the active tables may lag behind the refcounts, as in
# QEMU, and nothing else), read as before or as after the operation, and
# list the snapshots of before or of after.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io strace jq

cd "$TEST_DIR"
[ "${QTAP_VALGRIND:-0}" = 1 ] && skip "strace and valgrind do not nest usefully"
# LeakSanitizer refuses to run under ptrace; the rest of ASan works
ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
export ASAN_OPTIONS

snaps() {
	qemu-img info --output=json "$1" | jq -c '[.snapshots // [] | .[] | {id, name}]'
}

qemu-img create -q -f qcow2 -o cluster_size=4k orig.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -c -P 0x12 2M 4k' -c 'write -z 3M 8k' \
	orig.qcow2 >/dev/null
qemu-img snapshot -c old orig.qcow2
qemu-io -f qcow2 -c 'write -P 0x13 512k 1M' orig.qcow2 >/dev/null

# the image as it reads and lists before and after the operation, undisturbed
reference() {
	cp orig.qcow2 before.qcow2
	cp orig.qcow2 after.qcow2
	$BIN/tap-img "$@" after.qcow2 >/dev/null || die "$* failed undisturbed"
}

# judge WHAT: the state left in img.qcow2 is before's or after's, and sound
judge() {
	set +e
	qemu-img check img.qcow2 >check.out 2>&1
	rc=$?
	set -e
	case $rc in
	0 | 3) ;;
	2) grep "ERROR" check.out | grep -qv "OFLAG_COPIED" &&
		die "$1: qemu-img check: $(cat check.out)" ;;
	*) die "$1: qemu-img check exit $rc: $(cat check.out)" ;;
	esac
	s=$(snaps img.qcow2)
	[ "$s" = "$(snaps before.qcow2)" ] || [ "$s" = "$(snaps after.qcow2)" ] ||
		die "$1: snapshots $s are neither before's nor after's"
	qemu-img compare -q before.qcow2 img.qcow2 || qemu-img compare -q after.qcow2 img.qcow2 ||
		die "$1: contents are neither before's nor after's"
}

# stop_everywhere ARGS...: run `tap-img ARGS img.qcow2` failing at each write and sync
stop_everywhere() {
	reference "$@"
	for call in pwrite64 fdatasync; do
		n=1
		while :; do
			cp orig.qcow2 img.qcow2
			set +e
			strace -o /dev/null -e trace=$call -e inject=$call:error=EIO:when=$n \
				$BIN/tap-img "$@" img.qcow2 >out 2>&1
			rc=$?
			set -e
			[ $rc = 0 ] && break # past the last call: nothing failed
			[ $rc = 1 ] || die "$* with $call $n failing: exit $rc: $(cat out)"
			judge "$* with $call $n failing"
			n=$((n + 1))
		done
		[ $n -gt 1 ] || die "$*: no $call to fail"
	done
}

stop_everywhere snapshot -c new
stop_everywhere snapshot -a old
stop_everywhere snapshot -d old

# commit empties the overlay once the base has the data
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x21 0 4M' base.qcow2 >/dev/null
mv orig.qcow2 snap.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 orig.qcow2
qemu-io -f qcow2 -c 'write -P 0x22 1M 100k' orig.qcow2 >/dev/null
qemu-img snapshot -c s orig.qcow2
cp base.qcow2 base.orig
for call in pwrite64 fdatasync; do
	n=1
	while :; do
		cp orig.qcow2 img.qcow2
		cp base.orig base.qcow2
		set +e
		strace -f -o /dev/null -e trace=$call -e inject=$call:error=EIO:when=$n \
			$BIN/tap-img commit -q img.qcow2 >out 2>&1
		rc=$?
		set -e
		[ $rc = 0 ] && break
		[ $rc = 1 ] || die "commit with $call $n failing: exit $rc: $(cat out)"
		qemu-img check -q img.qcow2 >/dev/null 2>&1 || [ $? = 3 ] ||
			die "commit with $call $n failing: qemu-img check: $(qemu-img check img.qcow2)"
		qemu-img check -q base.qcow2 >/dev/null 2>&1 || [ $? = 3 ] ||
			die "commit with $call $n failing: base does not check"
		qemu-img compare -q orig.qcow2 img.qcow2 ||
			die "commit with $call $n failing: the overlay no longer reads the same"
		n=$((n + 1))
	done
done
echo "snapshot and commit leave a sound image wherever they stop"
