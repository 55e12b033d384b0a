#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Differential test against qemu-nbd: one seeded sequence of writes
# (aligned, unaligned, sub-sector, concurrent), zero writes (with and
# without unmap), trims and flushes, sent by qemu-io to qtap and to
# qemu-nbd (--discard=unmap) serving copies of one qcow2 image over a raw
# backing file.  Both exports must then read the same (nbdcopy to files,
# cmp), the images compare equal (qemu-img compare) and pass qemu-img
# check.  QTAP_SEED picks another sequence; the one used is printed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io qemu-nbd nbdcopy awk cmp

seed=${QTAP_SEED:-20240607}
ops=300
[ "${QTAP_VALGRIND:-0}" = 1 ] && ops=100
echo "seed $seed, $ops operations"

base=$(mktmp base.raw)
orig=$(mktmp orig.qcow2)
a=$(mktmp qtap.qcow2)
b=$(mktmp qemu.qcow2)
asock=$(mktmp qtap.sock)
bsock=$(mktmp qemu.sock)
script=$(mktmp ops)

qemu-img create -q -f raw "$base" 32M
qemu-io -f raw -c 'write -P 0x5a 0 12M' -c 'write -P 0x5b 20M 4M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$orig"
qemu-io -f qcow2 -c 'write -P 0x11 4M 4M' -c 'write -z 14M 1M' "$orig" >/dev/null
cp "$orig" "$a"
cp "$orig" "$b"

# The sequence.  Trims are cluster-aligned: a partial-cluster trim is a
# hint either server may drop, and then the contents would rightly differ.
awk -v seed="$seed" -v n="$ops" 'BEGIN {
	srand(seed)
	size = 32 * 1048576
	for (i = 0; i < n; i++) {
		r = rand()
		if (r < 0.45) {
			if (rand() < 0.5)
				len = (1 + int(rand() * 64)) * 4096
			else
				len = 1 + int(rand() * 70000)
			off = int(rand() * (size - len))
			if (rand() < 0.5)
				off -= off % 512
			printf "write %s-P %d %d %d\n", rand() < 0.05 ? "-f " : "", \
				1 + int(rand() * 254), off, len
		} else if (r < 0.60) {
			len = 1 + int(rand() * 300000)
			off = int(rand() * (size - len))
			printf "write -z %s%d %d\n", rand() < 0.5 ? "-u " : "", off, len
		} else if (r < 0.72) {
			len = (1 + int(rand() * 8)) * 65536
			off = int(rand() * (size / 65536 - 8)) * 65536
			printf "discard %d %d\n", off, len
		} else if (r < 0.76) {
			print "flush"
		} else {
			# concurrent writes side by side, some sharing a sector
			off = int(rand() * (size - 300000))
			for (k = 0; k < 4; k++) {
				len = 1 + int(rand() * 70000)
				printf "aio_write -P %d %d %d\n", 1 + int(rand() * 254), off, len
				off += len
			}
			print "aio_flush"
		}
	}
	print "flush"
}' >"$script"

td_start "$asock" -a "qcow2:$a" -q 2 --nbd "unix:$asock"
qnbd_start "$bsock" -f qcow2 --cache=none --aio=native --discard=unmap "$b"

for s in "$asock" "$bsock"; do
	qemu-io -f raw "$(nbd_uri "$s")" <"$script" >"$TEST_DIR/out.$(basename "$s")" 2>&1 ||
		die "qemu-io on $s failed"
	if grep -E -i 'fail|error' "$TEST_DIR/out.$(basename "$s")"; then
		die "qemu-io on $s reported errors"
	fi
done

nbdcopy "$(nbd_uri "$asock")" "$TEST_DIR/qtap.raw"
nbdcopy "$(nbd_uri "$bsock")" "$TEST_DIR/qemu.raw"
cmp "$TEST_DIR/qemu.raw" "$TEST_DIR/qtap.raw" || die "the exports read differently (seed $seed)"
td_stop "$TD_PID"
qnbd_stop "$QNBD_PID"

qemu-img check -q "$a" || die "qemu-img check failed on qtap's image (seed $seed)"
qemu-img check -q "$b" || die "qemu-img check failed on qemu-nbd's image"
qemu-img compare -q "$b" "$a" || die "the images differ (seed $seed)"
echo PASS
