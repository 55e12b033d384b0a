#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert -C against qemu-img's: what the source's block status
# calls data is copied whole (written zeros are not sparsified), so raw
# and qcow2 targets are allocated as qemu-img's are (qemu-img map), while
# zeros the block status reports stay holes; the copies read the same
# and pass qemu-img check.  -C with -c, -S or --salvage fails with
# qemu-img's message, in its order.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq

cd "$TEST_DIR"
qemu-img create -q -f qcow2 src.qcow2 2M
qemu-io -f qcow2 -c 'write -P 0 0 1M' -c 'write -P 1 512k 4k' -c 'write -z 1536k 256k' src.qcow2 >/dev/null

layout() { qemu-img map -f "$1" --output=json "$2" | jq -c '[.[] | {start, length, data, zero}]'; }

for fmt in raw qcow2; do
	rm -f "q.$fmt" "t.$fmt" "d.$fmt"
	qemu-img convert -C -f qcow2 -O $fmt src.qcow2 "q.$fmt"
	$TAPIMG convert -C -f qcow2 -O $fmt src.qcow2 "t.$fmt" || die "-C -O $fmt failed"
	$TAPIMG convert -f qcow2 -O $fmt src.qcow2 "d.$fmt" || die "-O $fmt failed"
	qemu-img compare -q -f qcow2 -F $fmt src.qcow2 "t.$fmt" || die "-C -O $fmt: differs from the source"
	[ $fmt = raw ] || qemu-img check -q "t.$fmt" || die "-C -O $fmt: qemu-img check failed"
	[ "$(layout $fmt "t.$fmt")" = "$(layout $fmt "q.$fmt")" ] ||
		die "-C -O $fmt: map $(layout $fmt "t.$fmt"), qemu-img $(layout $fmt "q.$fmt")"
	[ "$(layout $fmt "t.$fmt")" != "$(layout $fmt "d.$fmt")" ] ||
		die "-C -O $fmt: laid out as without -C (written zeros sparsified)"
done

fails() {
	msg=$1
	shift
	set +e
	qemu-img convert "$@" -f qcow2 -O qcow2 src.qcow2 x.qcow2 2>q.err
	qrc=$?
	$TAPIMG convert "$@" -f qcow2 -O qcow2 src.qcow2 x.qcow2 2>t.err
	trc=$?
	set -e
	[ $qrc -eq 1 ] && [ $trc -eq 1 ] || die "convert $*: exit $trc, qemu-img $qrc"
	grep -qF -- "$msg" q.err || die "qemu-img convert $*: $(cat q.err): the test is stale"
	[ "$(sed 's/^qemu-img: //' q.err)" = "$(sed 's/^tap-img: convert: //' t.err)" ] ||
		die "convert $*: '$(cat t.err)', qemu-img '$(cat q.err)'"
	[ ! -e x.qcow2 ] || die "convert $*: created the target"
}
fails "when -c is used" -C -c -S 4k --salvage
fails "when -S is used" -C -S 4k --salvage
fails "when -S is used" -C -S 0
fails "in salvaging mode" -C --salvage
echo "convert -C: as qemu-img"
