/* SPDX-License-Identifier: MIT */
/*
 * qcow2 consistency check and repair: what `qemu-img check [-r leaks|all]`
 * does for qcow2, with the same counters, the same messages and the same
 * repairs, on an image nothing else has open for writing.
 *
 * The check builds a refcount table in memory from everything that
 * references a host cluster (header, active and snapshot L1/L2 trees with
 * every entry type, snapshot table, refcount table and blocks, bitmap
 * directory, tables and data, encryption header), compares it with the
 * refcounts on disk, and checks the COPIED flags of the active tree.
 * Repairs, when asked:
 *
 *  - QCOW2_CHECK_FIX_LEAKS: refcounts above the number of references are
 *    lowered (freed clusters are punched out of the file, as QEMU
 *    discards them).  COPIED flags are fixed too when nothing else is
 *    wrong.
 *  - QCOW2_CHECK_FIX_ERRORS: refcounts below the number of references are
 *    raised; when the refcount structure cannot be trusted (a used
 *    cluster with refcount 0, a refcount block that is shared, misplaced
 *    or has reserved bits) it is rebuilt from the in-memory table into
 *    free space, with a new refcount table switched in by one synced
 *    header write; COPIED flags are fixed; misaligned preallocated zero
 *    clusters become plain zero clusters; a broken snapshot table is
 *    rewritten.  After a repair that leaves no corruption and no check
 *    error, the dirty and corrupt bits are cleared.
 *
 * Messages: one line per finding, worded as QEMU words it ("Leaked
 * cluster 5 refcount=2 reference=1", "ERROR cluster 5 refcount=0
 * reference=1", "Repairing OFLAG_COPIED data cluster: l2_entry=... "),
 * handed to a report callback; qemu-img prints them on stderr.
 *
 * Untrusted input: every field is bounds-checked; tables are read one
 * cluster at a time or within QEMU's size limits (format.h); the
 * in-memory refcount table is bounded by the file's size (at most
 * QCOW2_CHECK_MAX_CLUSTERS clusters, as QEMU) and by
 * QCOW2_CHECK_MAX_TABLE_BYTES; a repair never grows the file by more than
 * QCOW2_CHECK_MAX_GROW_BYTES.  Writes made by a repair are checked
 * against the image's metadata first and refused (-EIO) when they would
 * overlap it.
 *
 * Threads: synchronous, blocking I/O; no shared state.  The image must
 * not be in use by a writer while a repair runs.
 */
#ifndef QTAP_QCOW2_CHECK_H
#define QTAP_QCOW2_CHECK_H

#include <stdbool.h>
#include <stdint.h>

struct aio_file;

/* Repair modes (qemu-img check -r leaks = FIX_LEAKS, -r all = both). */
#define QCOW2_CHECK_FIX_LEAKS (1u << 0)
#define QCOW2_CHECK_FIX_ERRORS (1u << 1)
#define QCOW2_CHECK_REPAIR_LEAKS QCOW2_CHECK_FIX_LEAKS
#define QCOW2_CHECK_REPAIR_ALL (QCOW2_CHECK_FIX_LEAKS | QCOW2_CHECK_FIX_ERRORS)

/* QEMU's limits: the file may span at most INT_MAX clusters. */
#define QCOW2_CHECK_MAX_CLUSTERS 0x7fffffffull
/* and ours: the in-memory refcount table never exceeds this, */
#define QCOW2_CHECK_MAX_TABLE_BYTES (4ull << 30)
/* and a repair grows the file by at most this much. */
#define QCOW2_CHECK_MAX_GROW_BYTES (1ull << 30)

/*
 * struct qcow2_check_result - qemu-img's ImageCheck counters.  Counts of
 * findings still present (@corruptions, @leaks), of findings repaired
 * (@corruptions_fixed, @leaks_fixed), of failures of the check itself
 * (@check_errors: an unreadable table, a failed repair write), and the
 * allocation figures of the active tree.
 */
struct qcow2_check_result {
	uint64_t check_errors;
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t corruptions_fixed;
	uint64_t leaks_fixed;
	uint64_t image_end_offset; /* bytes: past the last cluster in use */
	uint64_t total_clusters;   /* clusters of virtual disk */
	uint64_t allocated_clusters;
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	/*
	 * The image could not be opened (not qcow2, a header QEMU refuses
	 * too, an I/O error); the reason has been logged and the counters
	 * are zero.
	 */
	bool open_failed;
};

/* qcow2_check_report_fn - one finding, a line without its newline. */
typedef void qcow2_check_report_fn(void *opaque, const char *line);

struct qcow2_check_opts {
	unsigned flags;		       /* QCOW2_CHECK_FIX_* */
	qcow2_check_report_fn *report; /* NULL: each line is logged as a warning */
	void *opaque;
};

/*
 * qcow2_check - check (and with @flags repair) the qcow2 image at @path,
 * opened read-only unless a repair is asked for.  Findings are logged as
 * warnings.  Returns 0 when the check ran to its end (the verdict is in
 * *@res: corruptions, leaks and check_errors), or -errno when it could not
 * (qemu-img's "Check failed": the image could not be opened, a table could
 * not be read or written, out of memory); *@res then holds what was
 * counted until then.
 */
int qcow2_check(const char *path, unsigned flags, struct qcow2_check_result *res);

/* qcow2_check_ex - qcow2_check() with the findings sent to @opts->report. */
int qcow2_check_ex(const char *path, const struct qcow2_check_opts *opts,
		   struct qcow2_check_result *res);

/*
 * qcow2_check_file - the same on a file the caller has open (read-write
 * for a repair; O_DIRECT or not).  @path names it in messages.  The
 * caller must not hold any of the image's metadata across the call: a
 * repair may move the refcount table and the snapshot table and change
 * L1 and L2 entries, so re-read the header and the tables afterwards.
 */
int qcow2_check_file(struct aio_file *f, const char *path, const struct qcow2_check_opts *opts,
		     struct qcow2_check_result *res);

/*
 * qcow2_check_repair_dirty - the repair a writable open runs on an image
 * whose dirty bit is set (lazy refcounts after a crash), as QEMU's open
 * does: a full check with QCOW2_CHECK_REPAIR_ALL on @f, opened
 * read-write.  Findings are logged as warnings, with a summary.  Returns
 * 0 when the check completed without check errors (the dirty bit is then
 * clear unless corruptions remain, which QEMU accepts too), or -EIO
 * ("could not repair dirty image") / -errno.  Re-read the header and the
 * tables afterwards (see qcow2_check_file).
 */
int qcow2_check_repair_dirty(struct aio_file *f, const char *path);

#endif
