#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img snapshot against qemu-img snapshot.  Three copies of an image get
# the same snapshot operations and guest writes: q only through qemu-img,
# t only through tap-img, x through both in turn (snapshots one tool made
# are applied, listed and deleted by the other).  After every step the exit
# codes agree, the three copies pass qemu-img check with no leak, read the
# same (qemu-img compare) and list the same snapshots; at the end every
# snapshot's contents (qemu-img convert -l) are the same in all three.
# Run on a plain image with compressed and zero clusters, on one with 4k
# clusters (many L2 tables), on one with extended L2 entries and on a v2
# image; a snapshot with a larger L1 table grows the active one as QEMU
# does; 1-bit refcounts refuse snapshots in both tools.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq python3

cd "$TEST_DIR"
turn=0

# the snapshots of $1 as qemu-img sees them, dates aside
snaps() {
	qemu-img info --output=json "$1" |
		jq -c '[.snapshots // [] | .[] | {id, name, "vm-state-size", icount}]'
}

# step ARGS...: the same qemu-img snapshot operation on the three copies
step() {
	if [ $turn = 0 ]; then xtool="$TAPIMG"; turn=1; else xtool="qemu-img"; turn=0; fi
	set +e
	qemu-img snapshot "$@" q.qcow2 >q.out 2>q.err
	qrc=$?
	$TAPIMG snapshot "$@" t.qcow2 >t.out 2>t.err
	trc=$?
	$xtool snapshot "$@" x.qcow2 >x.out 2>x.err
	xrc=$?
	set -e
	[ $qrc -eq $trc ] || die "snapshot $*: exit $trc, qemu-img $qrc: $(cat t.err)"
	[ $qrc -eq $xrc ] || die "snapshot $* ($xtool on x): exit $xrc, qemu-img $qrc"
	if [ $qrc -ne 0 ]; then
		grep -q "Could not\|not supported\|Cannot" t.err ||
			die "snapshot $*: no qemu-img style message: $(cat t.err)"
	fi
	for img in t.qcow2 x.qcow2; do
		qemu-img check -q "$img" || die "snapshot $*: qemu-img check failed on $img"
		qemu-img compare -q q.qcow2 "$img" || die "snapshot $*: $img differs from q"
		[ "$(snaps q.qcow2)" = "$(snaps "$img")" ] ||
			die "snapshot $*: $img lists $(snaps "$img"), q $(snaps q.qcow2)"
	done
}

writes() {
	for img in q.qcow2 t.qcow2 x.qcow2; do
		qemu-io -f qcow2 "$@" "$img" >/dev/null || die "qemu-io $* failed"
	done
}

# the -l table without the date column
list_nodate() { awk '{ if (NF >= 8) { $5 = ""; $6 = "" } print }' "$1"; }

# every snapshot's contents, the same in the three copies
same_snapshots() {
	for id in $(qemu-img info --output=json q.qcow2 | jq -r '.snapshots // [] | .[].id'); do
		for img in q t x; do
			qemu-img convert -l "snapshot.id=$id" -O raw $img.qcow2 $img.raw ||
				die "reading snapshot $id of $img"
		done
		cmp -s q.raw t.raw || die "snapshot $id differs in t"
		cmp -s q.raw x.raw || die "snapshot $id differs in x"
	done
}

run() {
	rm -f q.qcow2 t.qcow2 x.qcow2
	qemu-img create -q -f qcow2 "$@" q.qcow2 16M
	qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -c -P 0x22 4M 256k' \
		-c 'write -z 5M 1M' -c 'write -P 0x33 15M 1M' q.qcow2 >/dev/null
	cp q.qcow2 t.qcow2
	cp q.qcow2 x.qcow2
	step -l
	step -c s1
	writes -c 'write -P 0x44 1M 68k' -c 'write -c -P 0x55 8M 64k' -c 'discard 15M 512k'
	step -c s2
	step -c s1
	step -l
	list_nodate q.out >q.list
	list_nodate t.out >t.list
	cmp -s q.list t.list || die "snapshot -l: $(cat t.out), qemu-img: $(cat q.out)"
	writes -c 'write -P 0x66 0 512k' -c 'write -z 4M 64k'
	step -a s1
	writes -c 'write -P 0x77 2M 8k'
	step -a 2
	writes -c 'write -P 0x88 10M 4k'
	step -c s3
	step -d s1
	step -a nope
	step -d nope
	step -d 2
	step -a s1
	same_snapshots
	step -d s2
	step -d s1
	step -d s3
	step -l
}

run
run -o extended_l2=on
# under valgrind, two layouts keep the test within its time budget
if [ "${QTAP_VALGRIND:-0}" != 1 ]; then
	run -o cluster_size=4k
	run -o compat=0.10
fi

# a snapshot whose L1 table is larger than the active one (a VM state
# makes that; here its entry's l1_size is raised over the zeros of its L1
# cluster): applying it grows the active L1 at a new place, as QEMU does
qemu-img create -q -f qcow2 q.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' q.qcow2 >/dev/null
qemu-img snapshot -c s q.qcow2
qemu-io -f qcow2 -c 'write -P 0x22 0 1M' q.qcow2 >/dev/null
python3 - q.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    nb, off = struct.unpack('>IQ', f.read(72)[60:72])
    f.seek(off + 8)
    f.write(struct.pack('>I', 3))
PY
cp q.qcow2 t.qcow2
qemu-img snapshot -a s q.qcow2
$TAPIMG snapshot -a s t.qcow2 || die "applying a snapshot with a larger L1 failed"
qemu-img check -q t.qcow2 || die "check after applying a snapshot with a larger L1"
qemu-img compare -q q.qcow2 t.qcow2 || die "a snapshot with a larger L1 applied differently"
[ "$(od -A n -t x1 -j 36 -N 12 q.qcow2)" = "$(od -A n -t x1 -j 36 -N 12 t.qcow2)" ] ||
	die "the grown L1 table is not where QEMU puts it"
$TAPIMG snapshot -d s t.qcow2
qemu-img check -q t.qcow2 || die "check after deleting it"

# 1-bit refcounts cannot share a cluster: both refuse, the image unchanged
qemu-img create -q -f qcow2 -o refcount_bits=1 r.qcow2 4M
qemu-io -f qcow2 -c 'write 0 64k' r.qcow2 >/dev/null
set +e
$TAPIMG snapshot -c s r.qcow2 2>r.err
rc=$?
set -e
[ $rc -eq 1 ] || die "snapshot -c with 1-bit refcounts: exit $rc"
qemu-img check -q r.qcow2 || die "check after a refused snapshot"
[ "$(snaps r.qcow2)" = "[]" ] || die "a refused snapshot is listed"

# raw images have none: -l lists nothing, -c fails as qemu-img's
qemu-img create -q -f raw raw.img 1M
[ -z "$($TAPIMG snapshot -l -f raw raw.img)" ] || die "snapshot -l on raw listed something"
if $TAPIMG snapshot -c s -f raw raw.img 2>raw.err; then die "snapshot -c on raw succeeded"; fi
grep -q "Could not create snapshot 's': -95" raw.err || die "raw: $(cat raw.err)"
if $TAPIMG snapshot -l -c s q.qcow2 2>/dev/null; then die "-l -c accepted"; fi
$TAPIMG snapshot --help | grep -q "Usage: tap-img snapshot" || die "no --help"
echo "snapshot: create, apply, delete and list agree with qemu-img"
