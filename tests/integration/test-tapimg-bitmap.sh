#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img bitmap against qemu-img bitmap: the same operations on two copies
# of an image, one changed by each tool, must give the same bitmaps in
# qemu-img info (names, granularities, flags, order) and the same dirty
# ranges (read through qemu-nbd's qemu:dirty-bitmap context with nbdinfo),
# and tap-img's copy must pass qemu-img check without leaks.  Bitmaps
# QEMU writes are read back by tap-img (merges from them, clears of them),
# and the errors qemu-img refuses with are refused with exit 1.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io qemu-nbd nbdinfo jq

cd "$TEST_DIR"
pids=""
on_exit 'for p in $pids; do kill $p 2>/dev/null; wait $p 2>/dev/null; done'

qemu-img create -q -f qcow2 q.qcow2 64M            # qemu-img's copy
cp q.qcow2 t.qcow2                                 # tap-img's copy
qemu-img create -q -f qcow2 src.qcow2 64M          # a source of merges, written by QEMU
qemu-img bitmap --add -g 128k src.qcow2 s
qemu-io -f qcow2 -c 'write 5M 4k' -c 'write 40M 1M' src.qcow2 >/dev/null

bitmaps() { qemu-img info --output=json "$1" | jq -c '.["format-specific"].data.bitmaps // []'; }

# dirty ranges of bitmap $2 of image $1
dirty() {
	sock="$TEST_DIR/nbd.sock"
	rm -f "$sock"
	qemu-nbd -r -t -f qcow2 -B "$2" -k "$sock" "$1" &
	pids=$!
	wait_for_path "$sock" || die "qemu-nbd did not start on $1"
	nbdinfo --map="qemu:dirty-bitmap:$2" "nbd+unix:///?socket=$sock" ||
		die "nbdinfo on $1 failed"
	kill "$pids"
	wait "$pids" 2>/dev/null || true
	pids=""
}

# step ARGS...: the same bitmap operation by both tools, same outcome
step() {
	set +e
	qemu-img bitmap "$@" q.qcow2 >q.out 2>&1
	qrc=$?
	$TAPIMG bitmap "$@" t.qcow2 >t.out 2>&1
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "bitmap $*: exit $trc, qemu-img $qrc: $(cat t.out)"
	[ "$(bitmaps q.qcow2)" = "$(bitmaps t.qcow2)" ] ||
		die "bitmap $*: bitmaps $(bitmaps t.qcow2), qemu-img made $(bitmaps q.qcow2)"
	qemu-img check -q t.qcow2 || die "bitmap $*: qemu-img check failed on tap-img's image"
}

# same_bits NAME...: the bitmaps have the same dirty ranges in both copies
same_bits() {
	for name in "$@"; do
		[ "$(dirty q.qcow2 "$name")" = "$(dirty t.qcow2 "$name")" ] ||
			die "dirty ranges of $name differ"
	done
}

# guest writes, by QEMU, to both copies (enabled bitmaps record them)
writes() {
	for img in q.qcow2 t.qcow2; do
		qemu-io -f qcow2 "$@" "$img" >/dev/null || die "qemu-io $* failed"
	done
}

step --add b1
step --add -g 4k b2
step --add --disable b3
step --add -g 1M b4
writes -c 'write 1M 64k' -c 'write 10M 4k' -c 'write 63M 1M'
step --merge b1 b3
step --merge b2 -g 512 --add b5
same_bits b3 b5
step --disable --clear b1
writes -c 'write 20M 8k'
step --enable b3
step --merge s -b src.qcow2 -F qcow2 b4
step --merge s -b src.qcow2 b1
writes -c 'write 30M 4k'
same_bits b1 b2 b3 b4
step --remove b2
# failures: what was done before the failing operation stays (a sample under valgrind)
step --add b1
[ -n "$VG" ] || {
step --remove nope
step --clear --add b1 b4
step --merge nope b4
step --add -g 1000 b6
step -g 64k --remove b1
}
step --clear b5 --remove b5 --remove b3 --remove b4
qemu-img check t.qcow2 >check.out || die "final check: $(cat check.out)"
grep -q "No errors were found" check.out || die "final check: $(cat check.out)"

# bitmaps QEMU stored are read by tap-img: merge src's into tap-img's, clear QEMU's
$TAPIMG bitmap --add -g 128k --merge s -b src.qcow2 t.qcow2 fromq || die "merge from src failed"
[ "$(dirty t.qcow2 fromq)" = "$(dirty src.qcow2 s)" ] || die "merged bits differ from QEMU's"
$TAPIMG bitmap --clear src.qcow2 s || die "clear of QEMU's bitmap failed"
dirty src.qcow2 s | grep -q dirty && die "cleared bitmap still dirty"
qemu-img check -q src.qcow2 || die "src.qcow2 not clean after tap-img's clear"
# QEMU keeps maintaining a bitmap tap-img made
qemu-io -f qcow2 -c 'write 7M 4k' src.qcow2 >/dev/null
dirty src.qcow2 s | grep -q "7340032 *131072 *1 *dirty" || die "QEMU did not update it"

# images that cannot have bitmaps, usage errors
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
$TAPIMG bitmap --add v2.qcow2 x 2>/dev/null && die "v2 image accepted a bitmap"
qemu-img create -q -f raw r.raw 1M
$TAPIMG bitmap --add r.raw x 2>/dev/null && die "raw image accepted a bitmap"
$TAPIMG bitmap t.qcow2 x 2>/dev/null && die "no operation accepted"
$TAPIMG bitmap --add t.qcow2 2>/dev/null && die "no bitmap name accepted"
$TAPIMG bitmap -b src.qcow2 --add t.qcow2 x 2>/dev/null && die "-b without --merge accepted"
exit 0
