#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img resize against qemu-img resize on copies of the same images: raw
# and qcow2, growing (with each preallocation mode) and shrinking (refused
# without --shrink), relative sizes, internal snapshots, persistent
# bitmaps, compressed clusters and extended L2.  Both must exit alike; on
# success the results compare equal, pass qemu-img check and have the same
# virtual size.  With 512-byte clusters the L1 table must grow: data
# written before and after reads back through tap-img io and qemu-io.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp

cd "$TEST_DIR"
qio() { qemu-io "$@" >/dev/null || die "qemu-io $* failed"; }
vsize() { qemu-img info --output=json "$@" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

# same FILE ARGS...: tap-img and qemu-img resize ARGS on copies of FILE (named IMG)
same() {
	f=$1
	shift
	cp "$f" t.img
	cp "$f" q.img
	set +e
	ta=$(echo "$*" | sed 's/IMG/t.img/')
	qa=$(echo "$*" | sed 's/IMG/q.img/')
	# shellcheck disable=SC2086
	$TAPIMG resize $fmt $ta >t.out 2>t.err
	trc=$?
	# shellcheck disable=SC2086
	qemu-img resize $fmt $qa >q.out 2>q.err
	qrc=$?
	set -e
	[ $trc -eq $qrc ] || die "resize $*: exit $trc, qemu-img $qrc: $(cat t.err)"
	cmp -s t.out q.out || die "resize $*: printed '$(cat t.out)', qemu-img '$(cat q.out)'"
	[ $trc -eq 0 ] || return 0
	[ "$(vsize t.img)" = "$(vsize q.img)" ] || die "resize $*: virtual size $(vsize t.img)"
	qemu-img compare -q t.img q.img || die "resize $*: contents differ from qemu-img's"
	if [ "$fmt" = "-f qcow2" ]; then
		qemu-img check -q t.img || die "resize $*: qemu-img check failed"
		# written after the resize, the new space works too
		end=$(($(vsize t.img) - 4096))
		qio -f qcow2 -c "write -P 0x5a $end 4k" t.img
		qemu-img check -q t.img || die "resize $*: check after a write failed"
		qio -f qcow2 -c "read -P 0x5a $end 4k" t.img
	else
		cmp t.img q.img || die "resize $*: raw files differ"
	fi
	n=$((n + 1))
}

n=0
# raw
qemu-img create -q -f raw r.raw 1M
qio -f raw -c 'write -P 7 0 1M' r.raw
fmt="-f raw"
for args in "IMG 3M" "IMG +1000" "IMG 1000" "--shrink IMG 1000" \
	"--shrink IMG -- -4k" "--preallocation=falloc IMG 2M" \
	"--preallocation=full IMG +5M" "--preallocation=metadata IMG 2M" \
	"--preallocation=full --shrink IMG 100k" "IMG 1M" "-q IMG 7M" "IMG 0"; do
	# shellcheck disable=SC2086
	same r.raw $args
done

fmt="-f qcow2"
# 64 KiB clusters, data at both ends and a compressed cluster
qemu-img create -q -f qcow2 a.qcow2 10M
qio -f qcow2 -c 'write -P 1 0 300k' -c 'write -z 1M 1M' -c 'write -P 2 9M 1M' a.qcow2
qemu-img convert -c -O qcow2 a.qcow2 c.qcow2
imgs="a.qcow2 c.qcow2"
bopts="'' '-o extended_l2=on' '-o compat=0.10' '-o cluster_size=4k'"
if [ -n "$VG" ]; then # fewer, under valgrind: each run takes a second
	imgs=a.qcow2
	bopts="'' '-o compat=0.10'"
fi
for img in $imgs; do
	for args in "IMG 2G" "IMG +1M" "IMG 9M" "--shrink IMG 9M" \
		"--shrink IMG 1000448" "--shrink IMG -- -9M" "IMG 10000001" \
		"--preallocation=metadata IMG 12M" "--preallocation=falloc IMG 12345k" \
		"--preallocation=full IMG 11M" "--preallocation=full --shrink IMG 1M"; do
		# shellcheck disable=SC2086
		same $img $args
	done
done

# extended L2, and refcount_bits=1
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k x.qcow2 4M
qio -f qcow2 -c 'write -P 3 3000k 600k' -c 'write -P 4 5k 1k' x.qcow2
qemu-img create -q -f qcow2 -o refcount_bits=1 one.qcow2 4M
qio -f qcow2 -c 'write -P 3 3000k 600k' one.qcow2
for img in x.qcow2 one.qcow2; do
	same $img IMG 64M
	same $img --shrink IMG 3M
	same $img --preallocation=metadata IMG 5M
done

# internal snapshots: the active tables lose the clusters, the snapshot keeps them
qemu-img create -q -f qcow2 -o cluster_size=4k s.qcow2 4M
qio -f qcow2 -c 'write -P 5 0 4M' s.qcow2
qemu-img snapshot -c s1 s.qcow2
qio -f qcow2 -c 'write -P 6 2M 1M' s.qcow2
same s.qcow2 --shrink IMG 1M
qemu-img snapshot -a s1 t.img
qemu-img snapshot -a s1 q.img
qemu-img check -q t.img || die "applying the snapshot after a shrink: check failed"
qemu-img compare -q t.img q.img || die "the snapshot applied after a shrink differs"
same s.qcow2 --shrink IMG 2100k
same s.qcow2 IMG 16M
same s.qcow2 --preallocation=falloc IMG 8M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
qemu-img snapshot -c s1 v2.qcow2
same v2.qcow2 IMG 2M

# persistent bitmaps follow the disk
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-img bitmap --add b.qcow2 b0
qio -f qcow2 -c 'write -P 8 3M 64k' b.qcow2
qemu-img bitmap --add -g 512 b.qcow2 small
same b.qcow2 IMG 100M
qemu-img info t.img | sed -n '/bitmaps:/,/refcount/p' >t.bm
qemu-img info q.img | sed -n '/bitmaps:/,/refcount/p' >q.bm
cmp -s t.bm q.bm || die "bitmaps after growth: $(cat t.bm)"
same b.qcow2 --shrink IMG 3M
# a bitmap left in use by a crashed writer: refused before anything changes
qemu-io -f qcow2 -c 'write -P 9 0 64k' -c abort b.qcow2 >/dev/null 2>&1 || true
same b.qcow2 --shrink IMG 1M
[ $trc -eq 1 ] || die "resizing with an inconsistent bitmap was not refused"
qio -f qcow2 -c 'read -P 8 3M 64k' t.img

# a dirty lazy-refcounts image (a writer killed) is repaired first, as QEMU's open does
qemu-img create -q -f qcow2 -o lazy_refcounts=on d.qcow2 4M
qemu-io -f qcow2 -c 'write -P 4 0 256k' -c 'write -P 5 3M 64k' -c abort d.qcow2 >/dev/null 2>&1 ||
	true
qemu-img info --output=json d.qcow2 | grep -q '"dirty-flag": true' || die "d.qcow2 is not dirty"
same d.qcow2 IMG 64M
same d.qcow2 --shrink IMG 1M

# a longer backing file must not show through the grown part
qemu-img create -q -f raw base.raw 4M
qio -f raw -c 'write -P 9 0 4M' base.raw
eval "set -- $bopts"
for o in "$@"; do
	for sz in 1M 1000448; do
		# shellcheck disable=SC2086
		qemu-img create -q -f qcow2 $o -b base.raw -F raw o.qcow2 $sz
		qio -f qcow2 -c 'write -P 3 900k 10k' o.qcow2
		same o.qcow2 IMG 3M
		same o.qcow2 --preallocation=metadata IMG +64k
	done
done
qemu-img convert -c -O qcow2 -B base.raw -F raw o.qcow2 oc.qcow2
same oc.qcow2 IMG 8M

# locks: a writer of a qcow2 image refuses the resize; one of a raw file,
# sharing write and resize as qemu-io does on raw, does not
qemu-img create -q -f qcow2 lk.qcow2 1M
qemu-img create -q -f raw lk.raw 1M
qemu-io -f qcow2 -c 'sleep 20000' lk.qcow2 >/dev/null 2>&1 &
p1=$!
qemu-io -f raw -c 'sleep 20000' lk.raw >/dev/null 2>&1 &
p2=$!
on_exit "kill $p1 $p2 2>/dev/null"
# qemu-io says nothing when it is ready: wait for its OFD locks on both files
for f in lk.qcow2 lk.raw; do
	ino=$(stat -c %i $f)
	deadline=$(($(date +%s) + 30))
	until grep -q ":$ino " /proc/locks; do
		[ "$(date +%s)" -lt "$deadline" ] || die "qemu-io did not lock $f"
		sleep 0.05
	done
done
$TAPIMG resize -q lk.qcow2 2M 2>err && die "resizing a qcow2 image qemu-io writes was accepted"
grep -q '"write" lock' err || die "the lock refusal says: $(cat err)"
$TAPIMG resize -q -f raw lk.raw 2M || die "resizing a raw file qemu-io writes was refused"
kill $p1 $p2
wait $p1 $p2 2>/dev/null || true

# L1 growth: 512-byte clusters map 32 KiB per L2 table; 1 MiB needs 32 entries
qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 1M
$TAPIMG io -f qcow2 -c 'write -P 0x41 0 64k' -c 'write -P 0x42 1040384 8k' g.qcow2 >/dev/null ||
	die "tap-img io write before the growth failed"
cp g.qcow2 gq.qcow2
$TAPIMG resize -q g.qcow2 64M || die "growing across L1 boundaries failed"
qemu-img resize -q gq.qcow2 64M
l1=$(qemu-img info --output=json g.qcow2 >/dev/null && od -An -tu1 -j36 -N4 g.qcow2 | awk '{print $1*16777216+$2*65536+$3*256+$4}')
[ "$l1" -eq 2048 ] || die "L1 table has $l1 entries after growing to 64M, want 2048"
$TAPIMG io -f qcow2 -c 'write -P 0x43 40M 100k' -c 'write -P 0x44 67043328 65536' g.qcow2 \
	>/dev/null || die "tap-img io write after the growth failed"
qio -f qcow2 -c 'write -P 0x43 40M 100k' -c 'write -P 0x44 67043328 65536' gq.qcow2
qemu-img check -q g.qcow2 || die "check after the L1 growth failed"
qemu-img compare -q g.qcow2 gq.qcow2 || die "contents differ after the L1 growth"
for r in "0x41 0 64k" "0x42 1040384 8k" "0x43 40M 100k" "0x44 67043328 65536"; do
	$TAPIMG io -f qcow2 -c "read -P $r" g.qcow2 >/dev/null || die "tap-img io read -P $r"
	qio -f qcow2 -c "read -P $r" g.qcow2
done
n=$((n + 1))

echo "resize: $n cases agree with qemu-img"
