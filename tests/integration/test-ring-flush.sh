#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A blkif FLUSH_DISKCACHE means durable: tap-front writes through the ring
# into a fresh qcow2 image (every write allocates), flushes, and tapdisk is
# killed with SIGKILL the moment the flush is answered.  qemu-img check
# must then find the image clean (exit 0: the flush made data and metadata
# durable, in the contract's order), and QEMU must read back exactly what
# was written (compared with the same writes made by tap-front --raw into
# a plain file).  The same with a WRITE_BARRIER-backed flush is in the
# unit tests; here the point is the real process and the real image.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires qemu-img

img=$(mktmp fresh.qcow2)
ref=$(mktmp ref.raw)
qemu-img create -q -f qcow2 "$img" 64M
qemu-img create -q -f raw "$ref" 64M

load="--rw write --bs 64k --queues 2 --qd 8 --span 32M --ops 512 --verify --seed 21"
start_tapdisk td "qcow2:$img" -q 2
# shellcheck disable=SC2086
front $load --indirect 16 --flush --json >"$TEST_DIR/run.json" || die "the write and flush run failed"
kill -9 "$td_pid"
wait "$td_pid" 2>/dev/null || true
grep -q '"errors": 0' "$TEST_DIR/run.json" || die "the run had errors: $(cat "$TEST_DIR/run.json")"

qemu-img check "$img" >"$TEST_DIR/check.out" 2>&1 ||
	die "qemu-img check after SIGKILL (exit $?): $(cat "$TEST_DIR/check.out")"
# shellcheck disable=SC2086
$TAPFRONT --raw "$ref" $load >/dev/null || die "the reference run failed"
qemu-img compare -q -f qcow2 -F raw "$img" "$ref" || die "flushed data did not survive the kill"
echo PASS
