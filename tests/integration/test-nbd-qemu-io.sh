#!/bin/sh
# SPDX-License-Identifier: MIT
#
# qemu-io through nbd+unix:// against tapdisk serving a qcow2 image over a
# raw backing file, and a raw image: aligned, unaligned and sub-sector
# reads and writes, zero writes (aligned and not), trims, FUA writes, and
# concurrent sub-sector writes into one sector (the server's read-modify-
# write must keep all of them).  The same script run on a plain raw file
# is the reference: every image must read back equal to it (qemu-img
# compare), and the qcow2 must pass qemu-img check.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io

base=$(mktmp base.raw)
img=$(mktmp vm.qcow2)
raw=$(mktmp vm.raw)
ref=$(mktmp ref.raw)
sock=$(mktmp nbd.sock)

qemu-img create -q -f raw "$base" 64M
qemu-io -f raw -c 'write -P 0x5a 0 64M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$img"
cp "$base" "$raw"
cp "$base" "$ref"

S=16777216 # the sector the concurrent sub-sector writes share
# qemu_io_script QEMU-IO-ARGS...: every write, then reads that check it
qemu_io_script() {
	qemu-io "$@" \
		-c 'write -P 0x11 0 64k' -c 'read -P 0x11 0 64k' \
		-c 'write -P 0x22 1000 3000' -c 'read -P 0x22 1000 3000' -c 'read -P 0x11 0 1000' \
		-c 'write -P 0x33 5 7' -c 'read -P 0x33 5 7' -c 'read -P 0x11 0 5' \
		-c 'read -P 0x11 12 988' \
		-c 'write -P 0x44 65535 2' -c 'read -P 0x44 65535 2' -c 'read -P 0x5a 65537 511' \
		-c 'write -f -P 0x55 1M 128k' -c 'read -P 0x55 1M 128k' \
		-c 'write -z 2M 256k' -c 'read -P 0 2M 256k' \
		-c 'write -z 3145828 5000' -c 'read -P 0 3145828 5000' \
		-c 'read -P 0x5a 3145728 100' -c 'read -P 0x5a 3150828 100' \
		-c 'write -z -u 4M 1M' -c 'read -P 0 4M 1M' \
		-c 'discard 6M 1M' -c 'discard 8389000 300' \
		-c "aio_write -P 0x61 $S 100" -c "aio_write -P 0x62 $((S + 100)) 100" \
		-c "aio_write -P 0x63 $((S + 200)) 312" -c "aio_write -P 0x64 $((S + 512)) 7" \
		-c 'aio_flush' \
		-c "read -P 0x61 $S 100" -c "read -P 0x62 $((S + 100)) 100" \
		-c "read -P 0x63 $((S + 200)) 312" -c "read -P 0x64 $((S + 512)) 7" \
		-c 'write -P 0x77 63M 1M' -c 'read -P 0x77 63M 1M' -c 'flush'
}

run() { # what, qemu-io args...
	what=$1
	shift
	out=$(qemu_io_script "$@" 2>&1) || die "$what: qemu-io failed: $out"
	if echo "$out" | grep -E -i 'fail|error|mismatch|pattern'; then
		die "$what: qemu-io reported a problem"
	fi
}

run reference -f raw "$ref"
# discard on a raw file leaves the old data or zeros; the images must agree
# with the reference on what the protocol defines, so the trimmed ranges are
# overwritten in all three before comparing
fixup() { qemu-io "$@" -c 'write -P 0x66 6M 1M' -c 'write -P 0x66 8M 4k' >/dev/null; }

for spec in "qcow2:$img" "raw:$raw"; do
	td_start "$sock" -a "$spec" --nbd "unix:$sock"
	run "$spec" -f raw "$(nbd_uri "$sock")"
	fixup -f raw "$(nbd_uri "$sock")"
	td_stop "$TD_PID"
done
fixup -f raw "$ref"

qemu-img check -q "$img" || die "qemu-img check failed on the qcow2 image"
qemu-img compare -q -f raw -F qcow2 "$ref" "$img" || die "the qcow2 image differs from the reference"
qemu-img compare -q -f raw -F raw "$ref" "$raw" || die "the raw image differs from the reference"
echo PASS
