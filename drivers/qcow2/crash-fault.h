/* SPDX-License-Identifier: MIT */
/*
 * The crash harness's proof that it can fail (tests/crash/faults.sh): a
 * build with -DCRASH_FAULTS, which the Makefile allows only into
 * build-crash, breaks the ordering rule QTAP_CRASH_FAULT names.  In every
 * other build crash_fault() is the constant false.
 */
#ifndef QTAP_QCOW2_CRASH_FAULT_H
#define QTAP_QCOW2_CRASH_FAULT_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum crash_fault_id {
	CRASH_FAULT_NO_DATA_FLUSH = 1,	/* "no-data-flush": L2 without the data fdatasync */
	CRASH_FAULT_L2_BEFORE_REFCOUNT, /* "l2-before-refcount" */
	CRASH_FAULT_FREE_BEFORE_UNLINK, /* "free-before-unlink": decrements first */
	CRASH_FAULT_L1_NO_SYNC,		/* "l1-no-sync": the editor's L1 write not synced */
};

#ifdef CRASH_FAULTS
static inline bool crash_fault(enum crash_fault_id id)
{
	static const char *const names[] = { NULL, "no-data-flush", "l2-before-refcount",
					     "free-before-unlink", "l1-no-sync" };
	const char *want = getenv("QTAP_CRASH_FAULT");

	return want && strcmp(want, names[id]) == 0;
}
#else
#define crash_fault(id) ((void)(id), false)
#endif

#endif
