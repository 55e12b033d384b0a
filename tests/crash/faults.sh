#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The crash harness can fail: in a build with -DCRASH_FAULTS (make
# crash-faults builds it into build-crash), the qcow2 driver breaks the
# write-ordering rule QTAP_CRASH_FAULT names (drivers/qcow2/meta.c).  For
# each rule, the harness must report bad states on the workloads that
# reach it; with no rule broken, on none.
#
#   no-data-flush       L2 tables written with the data not yet synced.  The
#                       refcount write-back's own sync hides it unless the
#                       refcounts are lazy: the lazy workload (over a backing
#                       file, so that a lost COW shows) catches it.
#   l2-before-refcount  L2 entries written before the refcount increase.  Only
#                       in L2 tables the L1 already points to: a new table
#                       is reachable only once the L1 is written, after the
#                       refcounts (so sparse-refcount, where nearly every
#                       write needs a new table, does not show it).
#   free-before-unlink  the decrements applied (and written) before the L2
#                       entries that dropped the clusters.
#   l1-no-sync          the offline editor (drivers/qcow2/edit.c) writes an
#                       L1 table without the sync before the header points
#                       to it: tap-img resize's L1 growth (tapimg-resize).
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build-crash}
case $BUILD in /*) ;; *) BUILD=$top/$BUILD ;; esac
export BUILD
states=${CRASH_FAULT_STATES:-300}
rc=0

# expect FAULT WORKLOADS...: run; fail unless the harness reported something
expect() {
	fault=$1
	shift
	echo "== QTAP_CRASH_FAULT=$fault"
	if QTAP_CRASH_FAULT=$fault sh "$top/tests/crash/run.sh" -n "$states" -q 0 "$@" 2>/dev/null; then
		echo "NOT CAUGHT: $fault"
		rc=1
	else
		[ $? = 1 ] || { echo "could not run ($fault)"; rc=1; }
		echo "caught: $fault"
	fi
}

expect no-data-flush lazy
expect l2-before-refcount alloc cow-backing multiqueue
expect free-before-unlink discard snapshot compressed
expect l1-no-sync tapimg-resize
echo "== no rule broken"
if ! sh "$top/tests/crash/run.sh" -n "$states" -q 0 lazy alloc discard tapimg-resize; then
	echo "FALSE ALARM with no rule broken"
	rc=1
fi
exit $rc
