#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img dd against qemu-img dd on the same inputs: a qcow2 image with
# data, zeroed clusters and holes over a raw backing file, and a raw image.
# For each set of operands (bs, count, skip, with suffixes, past the end,
# count from the start of the input) to raw and to qcow2: both exit alike;
# on success the outputs have the same size, raw outputs are the same
# bytes, qcow2 outputs compare equal in strict mode (the same allocation:
# dd writes every block), have the same map and pass qemu-img check.  Bad
# operands fail in both with the same words.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp jq

cd "$TEST_DIR"
qio() { qemu-io "$@" >/dev/null || die "qemu-io $* failed"; }
vsize() { qemu-img info --output=json "$1" | jq '."virtual-size"'; }

qemu-img create -q -f raw base.raw 3M
qio -f raw -c "write -P 0x11 0 3M" base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=64k src.qcow2 3M
qio -f qcow2 -c "write -P 0x22 100k 200k" -c "write -z 1M 128k" -c "write -P 0x33 2M 5000" \
	-c "discard 2560k 128k" src.qcow2
qemu-img create -q -f raw src.raw 1000k
qio -f raw -c "write -P 0x44 7k 300k" src.raw

n=0
# same OUTFMT OPERANDS...: both tools dd the operands (IN/OUT stand for the files)
same() {
	ofmt=$1
	shift
	n=$((n + 1))
	set +e
	# shellcheck disable=SC2046
	$TAPIMG dd -O "$ofmt" $(echo "$*" | sed "s/OUT/t$n.$ofmt/") >t.out 2>t.err
	trc=$?
	# shellcheck disable=SC2046
	qemu-img dd -O "$ofmt" $(echo "$*" | sed "s/OUT/q$n.$ofmt/") >q.out 2>q.err
	qrc=$?
	set -e
	[ $trc -eq $qrc ] || die "dd $*: exit $trc, qemu-img $qrc: $(cat t.err q.err)"
	[ -s t.out ] && die "dd $*: printed $(cat t.out)"
	if [ $trc -ne 0 ]; then
		# the same sentence, less the program's prefix
		t=$(sed 's/^tap-img: dd: //' t.err)
		q=$(sed 's/^qemu-img: //' q.err)
		[ "$t" = "$q" ] || die "dd $*: said '$t', qemu-img '$q'"
		return 0
	fi
	t=t$n.$ofmt
	q=q$n.$ofmt
	[ "$(vsize "$t")" = "$(vsize "$q")" ] || die "dd $*: size $(vsize "$t"), qemu-img $(vsize "$q")"
	if [ "$ofmt" = raw ]; then
		cmp -s "$t" "$q" || die "dd $*: the raw outputs differ"
	else
		qemu-img check -q "$t" || die "dd $*: qemu-img check failed"
		qemu-img compare -q -s "$t" "$q" || die "dd $*: differs from qemu-img's (strict)"
		qemu-img map --output=json "$t" | jq -c 'map(del(.offset))' >t.map
		qemu-img map --output=json "$q" | jq -c 'map(del(.offset))' >q.map
		cmp -s t.map q.map || die "dd $*: map $(cat t.map), qemu-img $(cat q.map)"
	fi
	rm -f "$t" "$q"
}

for ofmt in raw qcow2; do
	same $ofmt -f qcow2 if=src.qcow2 of=OUT
	same $ofmt if=src.qcow2 of=OUT bs=64k
	same $ofmt -f qcow2 if=src.qcow2 of=OUT bs=4k skip=30 count=600
	same $ofmt -f qcow2 if=src.qcow2 of=OUT bs=1k count=2k
	same $ofmt -f qcow2 if=src.qcow2 of=OUT bs=3000 skip=7
	same $ofmt -f qcow2 if=src.qcow2 of=OUT bs=1M skip=3
	same $ofmt -f qcow2 if=src.qcow2 of=OUT count=0
	same $ofmt -f raw if=src.raw of=OUT bs=7k skip=1 count=100
	same $ofmt if=src.raw of=OUT bs=2M
done
# errors: the same words and exit code
same raw -f qcow2 if=src.qcow2 of=OUT skip=5000000
same raw -f qcow2 if=src.qcow2 of=OUT bs=0
same raw -f qcow2 if=src.qcow2 of=OUT bs=3G
same raw -f qcow2 if=src.qcow2 of=OUT bs=1x
same raw -f qcow2 if=src.qcow2 of=OUT count=x
same raw -f qcow2 if=src.qcow2 of=OUT skip=-1
same raw -f qcow2 if=src.qcow2 of=OUT iffy
same raw -f qcow2 if=src.qcow2 of=OUT ifx=1
same raw -f qcow2 if=src.qcow2
echo "ok: $n runs"
