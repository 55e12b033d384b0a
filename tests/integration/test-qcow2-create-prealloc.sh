#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img create -f qcow2 -o preallocation=metadata|falloc|full lays the
# image out as qemu-img does: same bytes, same length, and the same
# allocation as qemu-img map reports it (data clusters preallocated, L2
# tables interleaved for metadata, a refcount area then contiguous data
# for falloc and full), clean for qemu-img check.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp

cd "$TEST_DIR"
qemu-img create -q -f qcow2 base.qcow2 2M

n=0
same() { # MODE SIZE [OPTIONS...]
	mode=$1 size=$2
	shift 2
	n=$((n + 1))
	q=q$n.qcow2 t=t$n.qcow2
	qemu-img create -q -f qcow2 -o preallocation="$mode" "$@" "$q" "$size" ||
		die "qemu-img create $mode $* failed"
	$TAPIMG create -q -f qcow2 -o preallocation="$mode" "$@" "$t" "$size" ||
		die "tap-img create $mode $* $size failed"
	qemu-img check -q "$t" || die "create $mode $* $size: qemu-img check failed"
	[ "$(stat -c %s "$q")" -eq "$(stat -c %s "$t")" ] ||
		die "create $mode $* $size: lengths $(stat -c %s "$q") and $(stat -c %s "$t")"
	mq=$(qemu-img map --output=json "$q")
	mt=$(qemu-img map --output=json "$t")
	[ "$mq" = "$mt" ] || die "create $mode $* $size: qemu-img map differs: $mq / $mt"
	# every guest byte has a host cluster in this image (with extended L2
	# the subclusters stay unallocated: they read as zeros, not as data)
	[ "$size" = 0 ] || echo "$mt" | jq -e 'all(.[]; has("offset") and .depth == 0)' >/dev/null ||
		die "create $mode $* $size: not preallocated: $mt"
	cmp "$q" "$t" || die "create $mode $* $size: the files differ"
}

for mode in metadata falloc full; do
	same $mode 1M
	same $mode 1000
	same $mode 1048577
	same $mode 40M -o cluster_size=4k
	same $mode 8M -o cluster_size=512,refcount_bits=64
	same $mode 64M -o cluster_size=2M
	same $mode 5000 -o extended_l2=on,lazy_refcounts=on
	same $mode 30M -o cluster_size=1k,refcount_bits=1
	same $mode 1M -o compat=0.10
done
same metadata 0
# two L2 tables of the default size (sparse: cmp reads every byte)
same metadata 600M
# with a backing file, preallocation needs extended L2 (qemu-img's rule):
# the unset subcluster bits keep reading the backing file
for mode in metadata falloc full; do
	n=$((n + 1))
	qemu-img create -q -f qcow2 -o preallocation=$mode,extended_l2=on -b base.qcow2 -F qcow2 \
		q$n.qcow2 3M
	$TAPIMG create -q -f qcow2 -o preallocation=$mode,extended_l2=on -b base.qcow2 -F qcow2 \
		t$n.qcow2 3M || die "create $mode with a backing file failed"
	cmp q$n.qcow2 t$n.qcow2 || die "create $mode with a backing file: the files differ"
	qemu-img check -q t$n.qcow2 || die "create $mode with a backing file: check failed"
done
exit 0
