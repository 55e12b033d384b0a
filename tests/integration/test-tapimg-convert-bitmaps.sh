#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert --bitmaps [--skip-broken-bitmaps] against qemu-img's:
# the copy of a qcow2 image with enabled and disabled bitmaps of several
# granularities lists the same bitmaps (qemu-img info: names, flags,
# granularities, in the same order) and each reads the same dirty ranges
# (nbdinfo --map=qemu:dirty-bitmap:NAME through qemu-nbd) as qemu-img's
# copy and as the source; inconsistent bitmaps fail or are skipped with
# qemu-img's messages; a raw or v2 source or target, several sources, a
# name the -n target already has and a target of another size fail as with
# qemu-img.  Every image written passes qemu-img check.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io qemu-nbd nbdinfo jq

cd "$TEST_DIR"
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-img bitmap --add b.qcow2 b0
qemu-img bitmap --add -g 64k --disable b.qcow2 "b 1"
qemu-io -f qcow2 -c 'write 0 1M' -c 'write 3M 4k' b.qcow2 >/dev/null
qemu-img bitmap --add -g 512 b.qcow2 b2
qemu-img bitmap --add -g 1M b.qcow2 b3
qemu-io -f qcow2 -c 'write 2M 4k' -c 'write 3584k 1536' b.qcow2 >/dev/null
qemu-img bitmap --disable b.qcow2 b3
qemu-img create -q -f raw r.raw 4M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
# killed with the image open: its bitmaps stay in use (inconsistent)
cp b.qcow2 broken.qcow2
qemu-io -f qcow2 -c 'write 64k 64k' -c 'sigraise 9' broken.qcow2 >/dev/null 2>&1 || true
qemu-img bitmap --add -g 128k broken.qcow2 good
qemu-io -f qcow2 -c 'write 3M 200k' broken.qcow2 >/dev/null

bitmaps() { qemu-img info -f qcow2 --output=json "$1" | jq -c '.["format-specific"].data.bitmaps'; }

# the dirty ranges of bitmap $2 of image $1
dirty() {
	rm -f nbd.sock
	qnbd_start "$TEST_DIR/nbd.sock" -r -f qcow2 -B "$2" "$1"
	nbdinfo --map="qemu:dirty-bitmap:$2" "$(nbd_uri "$TEST_DIR/nbd.sock")" ||
		die "nbdinfo on bitmap '$2' of $1 failed"
	qnbd_stop "$QNBD_PID"
}

# same SRC ARGS...: both tools copy SRC (into q.qcow2, t.qcow2) with ARGS
same() {
	src=$1
	shift
	rm -f q.qcow2 t.qcow2
	set +e
	qemu-img convert "$@" -f qcow2 -O qcow2 "$src" q.qcow2 2>q.err
	qrc=$?
	$TAPIMG convert "$@" -f qcow2 -O qcow2 "$src" t.qcow2 2>t.err
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "convert $* $src: exit $trc, qemu-img $qrc: $(cat t.err)"
	sed 's/^qemu-img: //' q.err >q.msg
	sed 's/^tap-img: convert: //' t.err | grep -v '^tap-img\[' >t.msg || true
	cmp -s q.msg t.msg || die "convert $* $src: said '$(cat t.msg)', qemu-img '$(cat q.msg)'"
	[ $qrc -eq 0 ] || return 0
	qemu-img check -q t.qcow2 || die "convert $* $src: qemu-img check failed"
	qemu-img compare -q q.qcow2 t.qcow2 || die "convert $* $src: data differs"
	[ "$(bitmaps q.qcow2)" = "$(bitmaps t.qcow2)" ] ||
		die "convert $* $src: bitmaps $(bitmaps t.qcow2), qemu-img $(bitmaps q.qcow2)"
	bitmaps t.qcow2 | jq -r '.[].name' | while IFS= read -r name; do
		want=$(dirty q.qcow2 "$name")
		[ "$(dirty t.qcow2 "$name")" = "$want" ] ||
			die "convert $* $src: bitmap '$name' differs from qemu-img's"
		[ "$(dirty "$src" "$name")" = "$want" ] ||
			die "convert $* $src: bitmap '$name' differs from the source's"
	done
}

same b.qcow2 --bitmaps
[ "$(bitmaps t.qcow2 | jq length)" = 4 ] || die "not every bitmap was copied: $(bitmaps t.qcow2)"
same b.qcow2 --bitmaps --skip-broken-bitmaps
same broken.qcow2 --bitmaps
grep -q "Cannot copy inconsistent bitmap" t.err || die "inconsistent bitmap: $(cat t.err)"
same broken.qcow2 --bitmaps --skip-broken-bitmaps
[ "$(bitmaps t.qcow2 | jq -c '[.[].name]')" = '["good"]' ] || die "skipped: $(bitmaps t.qcow2)"
same b.qcow2 --skip-broken-bitmaps
same b.qcow2 --bitmaps -o compat=0.10
same v2.qcow2 --bitmaps

# the other failures, message for message
fails() {
	set +e
	qemu-img convert "$@" 2>q.err
	qrc=$?
	$TAPIMG convert "$@" 2>t.err
	trc=$?
	set -e
	[ $qrc -eq 1 ] && [ $trc -eq 1 ] || die "convert $*: exit $trc, qemu-img $qrc"
	sed -n 's/^qemu-img: //p' q.err >q.msg
	sed -n 's/^tap-img: convert: //p' t.err >t.msg
	cmp -s q.msg t.msg || die "convert $*: said '$(cat t.msg)', qemu-img '$(cat q.msg)'"
}
rm -f o.raw
fails --bitmaps -f qcow2 -O raw b.qcow2 o.raw
fails --bitmaps -f raw -O qcow2 r.raw o.qcow2
fails --bitmaps -f qcow2 -O qcow2 b.qcow2 b.qcow2 o.qcow2
for tool in qemu-img "$TAPIMG"; do
	rm -f n.qcow2 n2.qcow2
	qemu-img create -q -f qcow2 n.qcow2 4M
	qemu-img bitmap --add n.qcow2 b2
	qemu-img create -q -f qcow2 n2.qcow2 8M
	set +e
	$tool convert --bitmaps -n -f qcow2 -O qcow2 b.qcow2 n.qcow2 2>"n.err.${tool##*/}"
	rc1=$?
	$tool convert --bitmaps -n -f qcow2 -O qcow2 b.qcow2 n2.qcow2 2>"n2.err.${tool##*/}"
	rc2=$?
	set -e
	[ $rc1 = 1 ] && [ $rc2 = 1 ] || die "$tool: an existing or wrongly sized -n target: exit $rc1, $rc2"
	qemu-img check -q n.qcow2 && qemu-img check -q n2.qcow2 || die "$tool: -n targets fail check"
	bitmaps n.qcow2 >"n.bm.${tool##*/}"
	bitmaps n2.qcow2 >"n2.bm.${tool##*/}"
done
for f in n.bm n2.bm; do
	cmp "$f.qemu-img" "$f.tap-img" || die "$f: $(cat "$f.tap-img"), qemu-img $(cat "$f.qemu-img")"
done
for f in n.err n2.err; do
	[ "$(sed 's/^qemu-img: //' "$f.qemu-img")" = "$(sed -n 's/^tap-img: convert: //p' "$f.tap-img")" ] ||
		die "$f: $(cat "$f.tap-img"), qemu-img $(cat "$f.qemu-img")"
done
echo "convert --bitmaps: as qemu-img"
