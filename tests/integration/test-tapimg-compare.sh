#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img compare and map against qemu-img, on the same images: raw and
# qcow2 images with data, zero and unallocated ranges, compressed
# clusters, a backing chain with relative names and a short raw base, and
# images of different sizes.  compare must print the same text and exit
# with the same code (0 identical, 1 different, 2 cannot open) in every
# mode (plain, -s strict, -q); map the same human and JSON output, also
# for a window (--start-offset, --max-length).
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io

cd "$TEST_DIR"
mkdir -p sub
qio() { qemu-io "$@" >/dev/null || die "qemu-io $* failed"; }

qemu-img create -q -f qcow2 a.qcow2 4M
qio -f qcow2 -c 'write -P 1 64k 64k' -c 'write -z 1M 64k' -c 'write -P 3 3M 4k' a.qcow2
qemu-img convert -O raw a.qcow2 a.raw
qemu-img convert -O qcow2 a.qcow2 b.qcow2          # same data, other allocation
qemu-img convert -c -O qcow2 a.qcow2 comp.qcow2    # compressed
cp a.raw byte.raw                                  # one byte off, in a hole of a.qcow2
printf 'x' | dd of=byte.raw bs=1 seek=200003 conv=notrunc 2>/dev/null
cp a.raw byte2.raw                                 # one byte off, in data
printf 'x' | dd of=byte2.raw bs=1 seek=65636 conv=notrunc 2>/dev/null
qemu-img create -q -f qcow2 big.qcow2 8M           # larger, zeros past 4M
qio -f qcow2 -c 'write -P 1 64k 64k' -c 'write -P 3 3M 4k' big.qcow2
qemu-img create -q -f qcow2 bigdata.qcow2 8M       # larger, data past 4M
qio -f qcow2 -c 'write -P 1 64k 64k' -c 'write -P 3 3M 4k' -c 'write -P 9 6M 1k' bigdata.qcow2
# a chain: top -> sub/mid -> sub/base.raw (2 MiB: shorter than the top)
qemu-img create -q -f raw sub/base.raw 2M
qio -f raw -c 'write -P 1 0 1M' sub/base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid.qcow2
qio -f qcow2 -c 'write -P 2 512k 64k' -c 'write -z 768k 64k' sub/mid.qcow2
qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 top.qcow2 4M
qio -f qcow2 -c 'write -P 3 0 4k' -c 'write -P 4 3M 64k' top.qcow2
qemu-img convert -O qcow2 top.qcow2 flat.qcow2

# same_output ARGS...: both tools print the same and exit the same
same_output() {
	set +e
	qemu-img "$@" >q.out 2>q.err
	qrc=$?
	$TAPIMG "$@" >t.out 2>t.err
	trc=$?
	set -e
	[ $qrc -eq $trc ] || die "$*: exit $trc, qemu-img $qrc: $(cat t.err)"
	cmp -s q.out t.out || die "$*: output differs: $(diff q.out t.out)"
}

# under valgrind (QTAP_VALGRIND=1) a sample: every sixth pair and image, strict mode
sample() { [ -z "$VG" ] || [ $(($1 % 6)) -eq 0 ]; }
modes="plain -s"
[ -z "$VG" ] || modes="-s"

n=0
i=0
for pair in "a.qcow2 a.raw" "a.qcow2 b.qcow2" "a.qcow2 comp.qcow2" "a.raw comp.qcow2" \
	"a.qcow2 byte.raw" "a.qcow2 byte2.raw" "byte.raw a.qcow2" "a.raw byte2.raw" \
	"a.qcow2 big.qcow2" "big.qcow2 a.qcow2" "a.qcow2 bigdata.qcow2" "bigdata.qcow2 a.raw" \
	"top.qcow2 flat.qcow2" "flat.qcow2 top.qcow2" "top.qcow2 sub/mid.qcow2" \
	"top.qcow2 top.qcow2" "a.raw a.raw" "sub/mid.qcow2 sub/base.raw"; do
	i=$((i + 1))
	sample $i || continue
	# shellcheck disable=SC2086
	for mode in $modes; do
		[ "$mode" = plain ] && mode=""
		same_output compare $mode $pair
		n=$((n + 1))
	done
done
same_output compare -q a.qcow2 byte.raw
same_output compare -q -s a.qcow2 a.qcow2
same_output compare -f qcow2 -F raw a.qcow2 a.raw
same_output compare -f raw -F raw a.qcow2 a.raw
same_output compare -U -f qcow2 -F qcow2 top.qcow2 flat.qcow2
# exit 2: an image cannot be opened (the messages differ: only the codes are compared)
set +e
qemu-img compare a.qcow2 nothere >/dev/null 2>&1
qrc=$?
$TAPIMG compare a.qcow2 nothere >/dev/null 2>&1
trc=$?
set -e
[ $qrc -eq 2 ] && [ $trc -eq 2 ] || die "missing image: exit $trc, qemu-img $qrc"
$TAPIMG compare a.qcow2 >/dev/null 2>&1 && die "one image accepted"
out=$($TAPIMG compare -p a.qcow2 a.raw)
case $out in *"(100.00/100%)"*"Images are identical."*) ;; *) die "-p printed: $out" ;; esac

# ---- map ---------------------------------------------------------------------------
for img in a.qcow2 a.raw b.qcow2 comp.qcow2 byte.raw top.qcow2 ./top.qcow2 "$PWD/top.qcow2" \
	sub/mid.qcow2 flat.qcow2; do
	i=$((i + 1))
	sample $i || continue
	case $img in *comp.qcow2) ;; *) same_output map "$img" ;; esac
	same_output map --output=json "$img"
	[ -n "$VG" ] && continue
	same_output map --output=json --start-offset=64k --max-length=1M "$img"
	same_output map --output=json --start-offset=3000k "$img"
	n=$((n + 4))
done
# compressed clusters have no host offset to print in the human layout: exit 1 both
same_output map comp.qcow2
same_output map -f raw --output=json top.qcow2
same_output map --output=json --start-offset=5M top.qcow2
echo "$n comparisons with qemu-img"
exit 0
