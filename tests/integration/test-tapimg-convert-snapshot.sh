#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert -l and measure -l read an internal snapshot of a qcow2
# source, as qemu-img does: for every form of SNAPSHOT_PARAM (snapshot.id=,
# snapshot.name=, both, a bare id or name) the copy reads as qemu-img's
# (qemu-img compare, byte for byte in raw) and passes qemu-img check, and
# measure prints the same numbers.  A snapshot taken before the image grew
# (a shorter L1 table) reads past its end from the backing file.  Lookups
# that fail, bad keys, raw sources, several sources and the removed -s
# fail as qemu-img fails, with its messages.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io

cd "$TEST_DIR"
qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c 'write -P 9 0 16M' base.raw >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw s.qcow2 4M
qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -z 3M 64k' s.qcow2 >/dev/null
qemu-img snapshot -c snap1 s.qcow2
qemu-io -f qcow2 -c 'write -P 2 0 512k' -c 'write -P 3 2M 64k' s.qcow2 >/dev/null
qemu-img snapshot -c snap2 s.qcow2
# 4k clusters: an L1 entry covers 2M, so the grown image's L1 table (8
# entries) is longer than the first snapshots' (2)
qemu-img resize -q s.qcow2 16M
qemu-io -f qcow2 -c 'write -P 4 1M 64k' -c 'write -P 5 10M 64k' s.qcow2 >/dev/null
qemu-img snapshot -c 3 s.qcow2 # id 3, name "3"
qemu-img snapshot -c 1 s.qcow2 # id 4, name "1": a bare "1" is id 1 (snap1)
qemu-io -f qcow2 -c 'write -P 6 0 64k' s.qcow2 >/dev/null
qemu-img create -q -f raw r.raw 1M

# the copy of $1 (SNAPSHOT_PARAM) in format $2, by both tools, same exit and contents
same_copy() {
	rm -f q.img t.img
	set +e
	qemu-img convert -f qcow2 -O "$2" -l "$1" s.qcow2 q.img 2>q.err
	qrc=$?
	$TAPIMG convert -f qcow2 -O "$2" -l "$1" s.qcow2 t.img 2>t.err
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "convert -l '$1': exit $trc, qemu-img $qrc: $(cat t.err)"
	[ $qrc -eq 0 ] || return 0
	qemu-img compare -q -f "$2" -F "$2" q.img t.img || die "convert -l '$1' -O $2: differs"
	if [ "$2" = qcow2 ]; then
		qemu-img check -q t.img || die "convert -l '$1': qemu-img check failed"
	else
		cmp q.img t.img || die "convert -l '$1' -O raw: bytes differ"
	fi
	qemu-img compare -q -f qcow2 -F "$2" s.qcow2 t.img 2>/dev/null &&
		die "convert -l '$1': the copy is the current state, not the snapshot"
	return 0
}

same_measure() {
	set +e
	q=$(qemu-img measure -O qcow2 -l "$1" s.qcow2 2>&1)
	qrc=$?
	t=$($TAPIMG measure -O qcow2 -l "$1" s.qcow2 2>&1)
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "measure -l '$1': exit $trc, qemu-img $qrc"
	[ "$(echo "$q" | sed 's/^qemu-img: //')" = "$(echo "$t" | sed 's/^tap-img: measure: //')" ] ||
		die "measure -l '$1': '$t', qemu-img says '$q'"
}

for p in snap1 snap2 1 2 3 4 snapshot.id=1 snapshot.name=snap2 snapshot.id=2,snapshot.name=snap2 \
	snapshot.name=3 'snapshot.name=snap1,'; do
	same_copy "$p" qcow2
	same_copy "$p" raw
	same_measure "$p"
done
# the snapshots differ from each other: the parameter chose
qemu-img convert -f qcow2 -O raw -l snap1 s.qcow2 a.raw
$TAPIMG convert -f qcow2 -O raw -l 2 s.qcow2 b.raw
cmp -s a.raw b.raw && die "snap1 and snap2 read the same"
qemu-io -f raw -c 'read -P 9 12M 64k' a.raw | grep -q 'read 65536' ||
	die "past snap1's L1 table the backing file is not read"

# failures: same exit, same message
fails() {
	msg=$1
	shift
	set +e
	$TAPIMG "$@" >/dev/null 2>t.err
	trc=$?
	set -e
	[ $trc -eq 1 ] || die "$*: exit $trc, want 1"
	grep -qF -- "$msg" t.err || die "$*: '$(cat t.err)', want '$msg'"
}
qfails() {
	set +e
	qemu-img "$@" >/dev/null 2>q.err
	qrc=$?
	set -e
	[ $qrc -eq 1 ] || die "qemu-img $*: exit $qrc, the test's expectation is stale"
}
for args in "-l nope" "-l snapshot.id=1,snapshot.name=snap2" "-l snapshot.id=9" "-l snapshot.id="; do
	# shellcheck disable=SC2086
	qfails convert -f qcow2 -O qcow2 $args s.qcow2 q.img
	grep -qF "Failed to load snapshot: Can't find snapshot" q.err || die "qemu-img $args: $(cat q.err)"
	# shellcheck disable=SC2086
	fails "Failed to load snapshot: Can't find snapshot" convert -f qcow2 -O qcow2 $args s.qcow2 t.img
	# shellcheck disable=SC2086
	fails "Failed to load snapshot: Can't find snapshot" measure -O qcow2 $args s.qcow2
done
qfails convert -O qcow2 -l snapshot.foo=1 s.qcow2 q.img
fails "Invalid parameter 'snapshot.foo'" convert -O qcow2 -l snapshot.foo=1 s.qcow2 t.img
fails "Failed in parsing snapshot param 'snapshot.foo=1'" convert -f qcow2 -l snapshot.foo=1 s.qcow2 t.img
fails "Failed in parsing snapshot param 'snapshot.id=1,x=2'" measure -l snapshot.id=1,x=2 s.qcow2
qfails convert -f raw -l x r.raw q.img
fails "Block format 'raw' used by device '' does not support temporarily loading internal snapshots" \
	convert -f raw -l x r.raw t.img
qfails convert -f qcow2 -l snap1 s.qcow2 s.qcow2 q.img
fails "No support for concatenating multiple snapshot" convert -f qcow2 -l snap1 s.qcow2 s.qcow2 t.img
qfails measure -l snap1 --size 1M
fails "--image-opts, -f, and -l require a filename argument." measure -l snap1 --size 1M
qfails convert -f qcow2 -s snap1 s.qcow2 q.img
fails "invalid option" convert -f qcow2 -s snap1 s.qcow2 t.img
qemu-img check -q s.qcow2 || die "the source was changed"
echo "convert -l and measure -l: as qemu-img"
