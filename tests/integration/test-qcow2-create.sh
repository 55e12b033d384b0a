#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img create -f qcow2 writes the file qemu-img create writes, byte for
# byte, for option sets that exercise each layout path: small and 2 MiB
# clusters, v2, every refcount width (and a refcount table that must grow),
# extended L2, zstd, lazy refcounts, sizes that round, backing files with
# relative names and the size taken from them.  Each image passes
# `qemu-img check` and qemu-img reports the options that were asked for.
. "$(dirname "$0")/functions.sh"
requires qemu-img jq cmp

cd "$TEST_DIR"
mkdir sub
qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 3M
qemu-img create -q -f raw base.raw 5M

# The fields of `qemu-img info --output=json` that the options set.
summary() {
	qemu-img info --output=json "$1" | jq -c '[.["virtual-size"], .["cluster-size"],
		.["format-specific"].data.compat, .["format-specific"].data["lazy-refcounts"],
		.["format-specific"].data["refcount-bits"], .["format-specific"].data["extended-l2"],
		.["format-specific"].data["compression-type"], .["backing-filename"],
		.["backing-filename-format"]]'
}

# same SIZE EXPECTED [OPTIONS...]: both tools create sub/*.qcow2 (SIZE "-":
# none), the files are identical, ours is clean and has the EXPECTED summary.
n=0
same() {
	size=$1 want=$2
	shift 2
	n=$((n + 1))
	q=sub/q$n.qcow2 t=sub/t$n.qcow2
	[ "$size" = - ] && size=
	# shellcheck disable=SC2086
	qemu-img create -q -f qcow2 "$@" "$q" $size || die "qemu-img create $* failed"
	# shellcheck disable=SC2086
	$TAPIMG create -q -f qcow2 "$@" "$t" $size || die "tap-img create $* $size failed"
	cmp "$q" "$t" || die "create $* $size: the files differ"
	[ "$(stat -c %s "$q")" -eq "$(stat -c %s "$t")" ] || die "create $* $size: lengths differ"
	qemu-img check -q "$t" || die "create $* $size: qemu-img check failed"
	got=$(summary "$t")
	[ "$got" = "$want" ] || die "create $* $size: qemu-img info says $got, expected $want"
}

same 1M '[1048576,65536,"1.1",false,16,false,"zlib",null,null]'
same 0 '[0,65536,"1.1",false,16,false,"zlib",null,null]'
same 1000 '[1024,65536,"1.1",false,16,false,"zlib",null,null]'
same 3G '[3221225472,65536,"1.1",false,16,false,"zlib",null,null]'
same 64M '[67108864,512,"1.1",false,16,false,"zlib",null,null]' -o cluster_size=512
same 1G '[1073741824,2097152,"1.1",false,16,false,"zlib",null,null]' -o cluster_size=2M
same 1M '[1048576,65536,"0.10",null,16,null,"zlib",null,null]' -o compat=0.10
same 1M '[1048576,4096,"0.10",null,16,null,"zlib",null,null]' -o compat=v2,cluster_size=4k
for bits in 1 2 4 8 32 64; do
	same 256M "[268435456,512,\"1.1\",false,$bits,false,\"zlib\",null,null]" \
		-o cluster_size=512,refcount_bits=$bits
done
# 32 MiB of L1 in 512-byte clusters with 64-bit refcounts: new refcount
# blocks, then a new refcount table, in the middle of the L1 allocation.
same 16G '[17179869184,512,"1.1",false,64,false,"zlib",null,null]' \
	-o cluster_size=512,refcount_bits=64
same 1G '[1073741824,65536,"1.1",false,16,true,"zlib",null,null]' -o extended_l2=on
same 1G '[1073741824,16384,"1.1",false,16,true,"zlib",null,null]' \
	-o extended_l2=on,cluster_size=16k
same 1M '[1048576,65536,"1.1",true,16,false,"zstd",null,null]' \
	-o compression_type=zstd,lazy_refcounts=on
same - '[5242880,65536,"1.1",false,16,false,"zlib",null,null]' -o compat=1.1,size=5M
# backing files: relative to the new image's directory, size from the backing
same - '[3145728,65536,"1.1",false,16,false,"zlib","../base.qcow2","qcow2"]' \
	-b ../base.qcow2 -F qcow2
same - '[5242880,4096,"1.1",false,16,false,"zlib","../base.raw","raw"]' \
	-b ../base.raw -F raw -o cluster_size=4k
same 10M '[10485760,65536,"0.10",null,16,null,"zlib","../base.raw","raw"]' \
	-o backing_file=../base.raw,backing_fmt=raw,compat=v2
same - "[5242880,65536,\"1.1\",false,16,false,\"zlib\",\"$TEST_DIR/base.raw\",\"raw\"]" \
	-b "$TEST_DIR/base.raw" -F raw
# -u: the backing file is not opened, so it need not exist (until check)
qemu-img create -q -f qcow2 -u -b later.qcow2 -F qcow2 sub/uq.qcow2 1M
$TAPIMG create -q -f qcow2 -u -b later.qcow2 -F qcow2 sub/ut.qcow2 1M || die "create -u failed"
cmp sub/uq.qcow2 sub/ut.qcow2 || die "create -u: the files differ"
qemu-img create -q -f qcow2 sub/later.qcow2 1M
qemu-img check -q sub/ut.qcow2 || die "create -u: qemu-img check failed"

# A backing file whose length is not whole sectors: the size rounds up.
truncate -s 1000 odd.raw
same - '[1024,65536,"1.1",false,16,false,"zlib","../odd.raw","raw"]' -b ../odd.raw -F raw

# The same "Formatting" line as qemu-img.
a=$(qemu-img create -f qcow2 -o cluster_size=4k,lazy_refcounts=on -b ../base.raw -F raw \
	sub/f1.qcow2 | sed 's/f1/fX/')
b=$($TAPIMG create -f qcow2 -o cluster_size=4k,lazy_refcounts=on -b ../base.raw -F raw \
	sub/f2.qcow2 | sed 's/f2/fX/')
[ "$a" = "$b" ] || die "Formatting lines differ: '$a' vs '$b'"

# -o help lists the options qemu-img documents for qcow2.
help=$($TAPIMG create -f qcow2 -o help)
for o in backing_file backing_fmt cluster_size compat compression_type extended_l2 \
	lazy_refcounts preallocation refcount_bits size; do
	echo "$help" | grep -q "^  $o=<" || die "-o help does not list $o"
done
$TAPIMG create -f qcow2 -o '?' sub/x.qcow2 1M | grep -q "^Supported qcow2 options:" ||
	die "-o ? does not print help"
exit 0
