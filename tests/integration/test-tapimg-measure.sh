#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img measure prints what qemu-img measure prints (human and JSON) and
# exits as it does: for sizes with every qcow2 create option that changes
# the numbers, and for copies of raw, qcow2, compressed, chained,
# preallocated and bitmap-carrying images, into raw and qcow2.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io

cd "$TEST_DIR"
mkdir -p sub
qemu-img create -q -f raw sparse.raw 100M
qemu-io -f raw -c 'write 1M 64k' -c 'write 50M 3M' -c 'write 99M 1k' sparse.raw >/dev/null
qemu-img create -q -f raw odd.raw 1000
qemu-img create -q -f qcow2 data.qcow2 100M
qemu-io -f qcow2 -c 'write 0 1M' -c 'write -z 2M 1M' -c 'write 70M 100k' data.qcow2 >/dev/null
qemu-img bitmap --add data.qcow2 b1
qemu-img bitmap --add -g 512 data.qcow2 "a longer bitmap name"
qemu-img convert -c -O qcow2 data.qcow2 comp.qcow2
qemu-img create -q -f qcow2 -o preallocation=metadata pre.qcow2 20M
qemu-img create -q -f raw sub/base.raw 10M
qemu-io -f raw -c 'write 0 2M' sub/base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid.qcow2 30M
qemu-io -f qcow2 -c 'write 5M 1M' sub/mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write 20M 4k' top.qcow2 >/dev/null

same() {
	set +e
	q=$(qemu-img measure "$@" 2>/dev/null)
	qrc=$?
	t=$($TAPIMG measure "$@" 2>/dev/null)
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "measure $*: exit $trc, qemu-img $qrc"
	[ "$q" = "$t" ] || die "measure $*: '$t', qemu-img says '$q'"
}

n=0
sizes="1000 1G 100T"
images="sparse.raw odd.raw data.qcow2 comp.qcow2 pre.qcow2 top.qcow2 sub/mid.qcow2"
if [ -n "$VG" ]; then # a sample under valgrind
	same --size 1G -O qcow2 -o cluster_size=2M,refcount_bits=64
	same -O qcow2 --output=json data.qcow2
	same -O qcow2 top.qcow2
	same -O qcow2 -o preallocation=full sparse.raw
	exit 0
fi
for size in $sizes; do
	for o in "" "-o cluster_size=2M,refcount_bits=64" "-o extended_l2=on,compat=0.10" \
		"-o refcount_bits=1,preallocation=falloc" "-o cluster_size=512"; do
		# shellcheck disable=SC2086
		same --size "$size" -O qcow2 $o
		n=$((n + 1))
	done
done
same --size 1G
same --size 0 --output=json -O qcow2
for img in $images; do
	for o in "-O raw" "-O qcow2 --output=json" "-O qcow2 -o cluster_size=512,compat=0.10" \
		"-O qcow2 -o cluster_size=1M,extended_l2=on"; do
		# shellcheck disable=SC2086
		same $o "$img"
		n=$((n + 1))
	done
done
same -O qcow2 -f raw data.qcow2
same -O qcow2 -U top.qcow2
same -O qcow2 -o backing_file=x data.qcow2
same -O qcow2 -o preallocation=full sparse.raw
# refusals
same
same --size 1G data.qcow2
same -O qcow2 -o nope=1 --size 1G
same -f qcow2 --size 1G
same -O qcow2 nothere.qcow2
echo "$n comparisons with qemu-img"
