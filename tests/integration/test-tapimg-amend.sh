#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img amend against qemu-img amend on copies of the same images:
# compat=0.10/1.1 both ways and lazy_refcounts, with zero clusters (with
# and without a backing file), internal snapshots, zstd, bitmaps and a
# dirty lazy-refcounts image; refusals (features v2 cannot hold, bad or
# creation-only options, raw images) exit as qemu-img does.  On success the
# results compare equal, pass qemu-img check and qemu-img info reports the
# same format-specific fields; fresh images come out byte for byte equal.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp

cd "$TEST_DIR"
qio() { qemu-io "$@" >/dev/null || die "qemu-io $* failed"; }
fspec() { qemu-img info "$1" | sed -n '/^Format specific/,$p' | grep -v 'bitmaps\|^ *\[\|name:\|granularity\|flags:\|auto'; }

# same FILE ARGS...: tap-img and qemu-img amend ARGS IMG on copies of FILE
same() {
	f=$1
	shift
	cp "$f" t.img
	cp "$f" q.img
	set +e
	$TAPIMG amend "$@" t.img >t.out 2>t.err
	trc=$?
	qemu-img amend "$@" q.img >q.out 2>q.err
	qrc=$?
	set -e
	[ $trc -eq $qrc ] || die "amend $* ($f): exit $trc, qemu-img $qrc: $(cat t.err)"
	[ $trc -eq 0 ] || return 0
	qemu-img check -q t.img || die "amend $* ($f): qemu-img check failed"
	qemu-img compare -q t.img q.img || die "amend $* ($f): contents differ from qemu-img's"
	[ "$(fspec t.img)" = "$(fspec q.img)" ] ||
		die "amend $* ($f): info says '$(fspec t.img)', qemu-img's '$(fspec q.img)'"
	[ "$(qemu-img snapshot -l t.img)" = "$(qemu-img snapshot -l q.img)" ] ||
		die "amend $* ($f): snapshots differ"
	n=$((n + 1))
}

n=0
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-img create -q -f qcow2 v3.qcow2 4M
qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 4M
for img in v2.qcow2 v3.qcow2 lazy.qcow2; do
	for o in compat=1.1 compat=0.10 compat=v3,lazy_refcounts=on lazy_refcounts=off \
		lazy_refcounts=on compat=v2 compat=0.10,lazy_refcounts=off compat=2 \
		lazy_refcounts=maybe cluster_size=4k foo=1 size=8M size=1M compat=v2,size=2M; do
		same $img -o $o
		case $o in *size=*) continue ;; esac # sizes: same contents, not layout
		[ $trc -ne 0 ] || cmp -s t.img q.img || die "amend -o $o ($img): not byte-identical"
	done
done
same v3.qcow2 -o compat=0.10 -o lazy_refcounts=off
same v3.qcow2 -f raw -o compat=0.10
same v3.qcow2 -o help

# what v2 cannot hold
for o in extended_l2=on refcount_bits=1 refcount_bits=64 compression_type=zstd; do
	qemu-img create -q -f qcow2 -o $o f.qcow2 4M
	qio -f qcow2 -c 'write -P 1 0 64k' f.qcow2
	same f.qcow2 -o compat=0.10
done
qio -f qcow2 -c 'write -c -P 2 64k 64k' f.qcow2 # zstd with a compressed cluster
same f.qcow2 -o compat=0.10
[ $trc -eq 1 ] || die "downgrading zstd compressed clusters was not refused"

# zero clusters, without and with a backing file, and in a snapshot
qemu-img create -q -f qcow2 z.qcow2 4M
qio -f qcow2 -c 'write -P 1 0 1M' -c 'write -z 64k 128k' -c 'write -z -u 512k 64k' \
	-c 'write -z 3M 64k' z.qcow2
qemu-img create -q -f raw base.raw 4M
qio -f raw -c 'write -P 9 0 4M' base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw zb.qcow2
qio -f qcow2 -c 'write -P 1 0 1M' -c 'write -z 64k 128k' -c 'write -z -u 512k 64k' \
	-c 'write -z 3M 64k' zb.qcow2
cp zb.qcow2 zs.qcow2
qemu-img snapshot -c s1 zs.qcow2
qio -f qcow2 -c 'write -z 0 64k' -c 'write -P 3 3M 64k' zs.qcow2
for img in z.qcow2 zb.qcow2 zs.qcow2; do
	same $img -o compat=0.10
	[ $trc -eq 0 ] || die "downgrading $img failed: $(cat t.err)"
	for s in $(qemu-img snapshot -l t.img | awk 'NR > 2 { print $2 }'); do
		qemu-img snapshot -a "$s" t.img
		qemu-img snapshot -a "$s" q.img
		qemu-img compare -q t.img q.img || die "snapshot $s of $img differs after downgrade"
	done
done

# bitmaps: qemu-img leaves them to leak; tap-img removes them cleanly
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-img bitmap --add b.qcow2 b0
same b.qcow2 -o compat=0.10

# a dirty lazy-refcounts image is repaired first
qemu-img create -q -f qcow2 -o lazy_refcounts=on d.qcow2 4M
qemu-io -f qcow2 -c 'write -P 4 0 256k' -c abort d.qcow2 >/dev/null 2>&1 || true
qemu-img info --output=json d.qcow2 | grep -q '"dirty-flag": true' || die "d.qcow2 is not dirty"

same d.qcow2 -o lazy_refcounts=off
same d.qcow2 -o compat=0.10

echo "amend: $n cases agree with qemu-img"
