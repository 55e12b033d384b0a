#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A sample of the crash-state harness (tests/crash/run.sh; `make crash` runs
# the full set): every workload is recorded through the driver and a few
# dozen post-crash states of each are built and checked, qemu-img check
# included on some.  Any corruption, lost flushed write or stale read fails.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io seq truncate

export CRASH_DIR="$TEST_DIR" CRASH_VG="$VG"
if [ -n "$VG" ]; then
	# valgrind: five workloads, short runs, a handful of states each
	sh "$TOP/tests/crash/run.sh" -n 8 -q 4 -o 60 alloc cow-backing lazy compressed tapimg-resize >"$TEST_DIR/table" ||
		{ cat "$TEST_DIR/table"; die "the crash harness found a bad state (or could not run)"; }
else
	sh "$TOP/tests/crash/run.sh" -n 40 -q 10 -o 120 >"$TEST_DIR/table" ||
		{ cat "$TEST_DIR/table"; die "the crash harness found a bad state (or could not run)"; }
fi
cat "$TEST_DIR/table"
states=$(awk '$1 == "total" { print $2 }' "$TEST_DIR/table")
[ "${states:-0}" -gt 0 ] || die "no state was checked"
