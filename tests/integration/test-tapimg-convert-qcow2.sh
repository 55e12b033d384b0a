#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert -O qcow2, checked by qemu-img: the target is created by
# the qcow2 driver with the -o options asked for, written through it, and
# must pass qemu-img check, compare equal to the source, keep holes as
# unallocated clusters, and with -B hold only what the source's top image
# holds.  Skipped (with the reason) until the qcow2 driver can create and
# write images: that is detected by trying.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp

d=$(mktmp q)
mkdir -p "$d"
cd "$d"

# Can the qcow2 driver create and write an image yet?
if ! $TAPIMG create -q -f qcow2 probe.qcow2 1M >probe.log 2>&1; then
	skip "the qcow2 driver cannot create images yet: $(tail -n 1 probe.log)"
fi
if ! $TAPIMG io -f qcow2 -c 'write -P 0x11 0 64k' probe.qcow2 >probe.log 2>&1; then
	skip "the qcow2 driver cannot write yet: $(grep -v '^wrote\|ops;' probe.log | tail -n 1)"
fi

# Bytes of the image that read as data, from qemu-img map.
data_bytes() { # image
	qemu-img map -f qcow2 --output=json "$1" |
		awk -F'[:,]' '/"data": true/ { for (i = 1; i < NF; i++) if ($i ~ /"length"/) n += $(i + 1) }
			END { print n + 0 }'
}

verify() { # target, source, source format
	qemu-img check -q -f qcow2 "$1" || die "$1: qemu-img check failed"
	qemu-img compare -q -f "$3" -F qcow2 "$2" "$1" || die "$1: differs from $2"
}

# Sources: a chain base.raw <- mid.qcow2 <- top.qcow2, and a sparse raw file.
qemu-img create -q -f raw base.raw 6M
qemu-io -f raw -c 'write -P 0x5a 0 6M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 12M
qemu-io -f qcow2 -c 'write -P 0x66 1M 1M' -c 'write -z 3M 64k' mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x77 5M 100k' -c 'write -P 0 9M 1M' -c 'write -P 0x78 15M 512' \
	top.qcow2 >/dev/null
qemu-img create -q -f raw sparse.raw 8M
qemu-io -f raw -c 'write -P 0x31 0 64k' -c 'write -P 0 1M 2M' -c 'write -P 0x32 7M 1M' \
	sparse.raw >/dev/null

# raw -> qcow2: the zeros written as data stay holes.
$TAPIMG convert -O qcow2 sparse.raw sparse.qcow2 || die "raw -> qcow2 failed"
verify sparse.qcow2 sparse.raw raw
n=$(data_bytes sparse.qcow2)
[ "$n" -le $((1024 * 1024 + 65536)) ] || die "raw -> qcow2: $n bytes of data; holes lost"

# The chain flattened, with format options.
for o in "" "cluster_size=4k" "compat=0.10" "cluster_size=2M,refcount_bits=1" \
	"extended_l2=on" "compression_type=zstd"; do
	rm -f flat.qcow2
	$TAPIMG convert -f qcow2 -O qcow2 ${o:+-o "$o"} top.qcow2 flat.qcow2 ||
		die "convert -o '$o' failed"
	verify flat.qcow2 top.qcow2 qcow2
	case $o in
	cluster_size=4k) qemu-img info flat.qcow2 | grep -q 'cluster_size: 4096' ;;
	compat=0.10) qemu-img info flat.qcow2 | grep -q 'compat: 0.10' ;;
	cluster_size=2M*) qemu-img info flat.qcow2 | grep -q 'refcount bits: 1' ;;
	extended_l2=on) qemu-img info flat.qcow2 | grep -q 'extended l2: true' ;;
	compression_type=zstd) qemu-img info flat.qcow2 | grep -q 'compression type: zstd' ;;
	*) true ;;
	esac || die "convert -o '$o': the target does not have the option"
done
# Holes: the data of the chain (6M + 100k + 512 bytes, rounded to clusters)
# and nothing of the zeros at 9M or of the ranges nobody wrote.
$TAPIMG convert -f qcow2 -O qcow2 top.qcow2 flat.qcow2 || die "chain -> qcow2 failed"
n=$(data_bytes flat.qcow2)
[ "$n" -le $((6 * 1024 * 1024 + 4 * 65536)) ] || die "chain -> qcow2: $n bytes of data"
# -S 0: every cluster allocated.
rm -f full.qcow2
$TAPIMG convert -f qcow2 -O qcow2 -S 0 top.qcow2 full.qcow2 || die "convert -S 0 failed"
verify full.qcow2 top.qcow2 qcow2
[ "$(data_bytes full.qcow2)" -eq 16777216 ] || die "convert -S 0 left unallocated clusters"
# In-order and out-of-order writes, one request or sixteen, O_DIRECT.
for args in "-m 1" "-m 16 -W" "-t none -T none"; do
	rm -f par.qcow2
	# shellcheck disable=SC2086
	$TAPIMG convert $args -f qcow2 -O qcow2 top.qcow2 par.qcow2 || die "convert $args failed"
	verify par.qcow2 top.qcow2 qcow2
done

# -B: an overlay of mid.qcow2 that holds only what top.qcow2 holds itself.
$TAPIMG convert -f qcow2 -O qcow2 -B mid.qcow2 -F qcow2 top.qcow2 delta.qcow2 ||
	die "convert -B failed"
verify delta.qcow2 top.qcow2 qcow2
qemu-img info delta.qcow2 | grep -q 'backing file: mid.qcow2' || die "-B: no backing file"
qemu-img map --output=json delta.qcow2 >delta.map
n=$(awk -F'[:,]' '/"depth": 0/ && /"data": true/ {
	for (i = 1; i < NF; i++) if ($i ~ /"length"/) n += $(i + 1) } END { print n + 0 }' delta.map)
[ "$n" -le $((3 * 65536)) ] || die "-B: the overlay holds $n bytes, more than top.qcow2 does"

# -n: into an existing qcow2 image full of other data.
qemu-img create -q -f qcow2 existing.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0xee 0 16M' existing.qcow2 >/dev/null
$TAPIMG convert -n -f qcow2 -O qcow2 top.qcow2 existing.qcow2 || die "convert -n failed"
verify existing.qcow2 top.qcow2 qcow2

# -c: compressed clusters once the driver writes them; until then, refused.
rm -f comp.qcow2
if out=$($TAPIMG convert -c -f qcow2 -O qcow2 top.qcow2 comp.qcow2 2>&1); then
	verify comp.qcow2 top.qcow2 qcow2
	qemu-img check --output=json comp.qcow2 | grep -q '"compressed-clusters": [1-9]' ||
		die "convert -c wrote no compressed cluster"
else
	echo "$out" | grep -q 'compression is not supported by this format' ||
		die "convert -c failed: $out"
	[ ! -e comp.qcow2 ] || die "convert -c created the target before refusing"
fi

# Errors name what is wrong.
out=$($TAPIMG convert -O qcow2 -o cluster_size=3k sparse.raw bad.qcow2 2>&1) &&
	die "cluster_size=3k accepted"
# qemu-img's own wording, which names the option by its meaning
echo "$out" | grep -qi 'cluster.size' || die "bad cluster_size: $out"
out=$($TAPIMG convert -O qcow2 -o no_such_option=1 sparse.raw bad.qcow2 2>&1) &&
	die "no_such_option accepted"
echo "$out" | grep -q 'no_such_option' || die "unknown option: $out"
exit 0
