#!/bin/sh
# SPDX-License-Identifier: MIT
#
# fio's nbd engine (libnbd) writes and verifies through the export:
# random and sequential, 512 bytes to 256 KiB, several jobs (one
# connection each) at once, on a fresh qcow2 (every write allocates) and
# again over what the first pass wrote, then qemu-img check.  Under
# valgrind the amounts are smaller.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img fio

fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || skip "this fio has no nbd engine"
img=$(mktmp vm.qcow2)
sock=$(mktmp nbd.sock)
job=$(mktmp verify.fio)
size=8M
[ "${QTAP_VALGRIND:-0}" = 1 ] && size=1M

qemu-img create -q -f qcow2 "$img" 64M
cat >"$job" <<JOB
[global]
ioengine=nbd
uri=$(nbd_uri "$sock")
size=$size
offset_increment=8M
verify=crc32c
verify_fatal=1
verify_state_save=0
iodepth=16
[rand4k]
rw=randwrite
bs=4k
numjobs=2
[seq64k]
offset=16M
rw=write
bs=64k
numjobs=2
[randmixed]
offset=32M
rw=randwrite
bsrange=512-256k
numjobs=2
[seq1m-qd32]
offset=48M
rw=write
bs=1M
iodepth=32
JOB

td_start "$sock" -a "qcow2:$img" -q 2 --nbd "unix:$sock"
for pass in fresh allocated; do
	fio --output="$TEST_DIR/fio.$pass" "$job" || {
		cat "$TEST_DIR/fio.$pass" >&2
		die "fio verify failed on the $pass image"
	}
	grep -q 'err= 0' "$TEST_DIR/fio.$pass" || die "fio reported an error on the $pass image"
done
td_stop "$TD_PID"
qemu-img check -q "$img" || die "qemu-img check failed"
echo PASS
