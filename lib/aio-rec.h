/* SPDX-License-Identifier: MIT */
/*
 * Write recording for the crash-state harness (tests/crash/).
 *
 * While a recorder is installed, every request that changes a file (write,
 * write zeroes, discard) and every fdatasync is logged twice: when it is
 * handed to the kernel (ISSUE, with the bytes a write carries) and when it
 * completes (DONE, with its result).  lib/aio logs the asynchronous
 * requests where they enter and leave the engine; drivers' blocking writes
 * (drivers/qcow2/sync-io.c) log theirs around the system call.  The test
 * that drives the image logs the guest-visible events in the same stream
 * (a guest request issued, a guest request acknowledged), so one log
 * orders everything that happened.
 *
 * Files are named in the log by a small number given the first time a
 * file is written; at that moment, before the write, the recorder copies
 * the file (holes kept) to LOG.N, the state the replay starts from.
 *
 * Off, the cost is one load and a predicted branch per request: nothing is
 * installed in tapdisk or the tools, only in the harness's programs.
 * Everything is serialised under one lock, so several queue threads may
 * record at once; records are in the order the lock was taken.
 */
#ifndef QTAP_AIO_REC_H
#define QTAP_AIO_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct aio_file;
struct aio_rec;

#define AIO_REC_MAGIC 0x71726563u /* "qrec" */
#define AIO_REC_MAX_FILES 16u

enum aio_rec_type {
	AIO_REC_FILE = 1,  /* @file is named: data = its path */
	AIO_REC_WRITE,	   /* file write issued: offset, len, data */
	AIO_REC_ZERO,	   /* file range zeroed or discarded, issued: offset, len */
	AIO_REC_FSYNC,	   /* fdatasync of @file issued */
	AIO_REC_DONE,	   /* file request @id completed with @err */
	AIO_REC_G_WRITE,   /* guest write issued: offset, len, data; flags */
	AIO_REC_G_ZERO,	   /* guest write zeroes issued: offset, len; flags */
	AIO_REC_G_DISCARD, /* guest discard issued: offset, len */
	AIO_REC_G_FLUSH,   /* guest flush issued */
	AIO_REC_G_DONE,	   /* guest request @id acknowledged with @err */
	AIO_REC_G_SIZE,	   /* the guest disk's size is @len; cluster @offset */
	AIO_REC_START,	   /* a process starts recording: data = its name */
	AIO_REC_TRUNC,	   /* @file's size set to @offset (ftruncate) issued */
};

/* Guest request flags in a record. */
#define AIO_REC_F_FUA (1u << 0)
#define AIO_REC_F_UNMAP (1u << 1)

/* One record; @data_len bytes of data follow it in the log. */
struct aio_rec_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t file;
	uint64_t id;
	uint64_t offset;
	uint64_t len;
	int32_t err;
	uint32_t flags;
	uint64_t data_len;
};
_Static_assert(sizeof(struct aio_rec_hdr) == 48, "aio_rec_hdr is 48 bytes");

/* The recorder in use, or NULL.  Read by the hooks; set with aio_rec_install. */
extern struct aio_rec *aio_rec_active;

/* aio_rec_on - is a recorder installed?  The hooks' cheap test. */
static inline bool aio_rec_on(void)
{
	return __builtin_expect(__atomic_load_n(&aio_rec_active, __ATOMIC_RELAXED) != NULL, 0);
}

/*
 * aio_rec_new - a recorder writing to @log_path (created, truncated).
 * Returns 0 and *out, or -errno (logged).
 */
int aio_rec_new(const char *log_path, struct aio_rec **out);

/*
 * aio_rec_append - a recorder adding to the log at @log_path that another
 * process wrote and closed: the files it named keep their numbers (and
 * their starting copies), ids continue after its last.  So a sequence of
 * processes on one image (a tool, then a guest workload) makes one log.
 * Returns 0 and *out, or -errno (logged): -EINVAL when the log is not one.
 */
int aio_rec_append(const char *log_path, struct aio_rec **out);

/*
 * aio_rec_start_env - the programs' test switch QTAP_RECORD=LOG: a recorder
 * writing LOG (or appending to it when the value is "+LOG"), installed.
 * *out is NULL when the variable is unset or empty.  Returns 0, or -errno.
 * The caller ends it with aio_rec_free once its I/O is over.
 */
int aio_rec_start_env(struct aio_rec **out);

/* aio_rec_free - flush and close the log; uninstalls it first.  NULL: no-op.
 * Returns 0, or -errno when the log could not be written in full. */
int aio_rec_free(struct aio_rec *r);

/* aio_rec_install - make @r (or NULL) the recorder.  No I/O in flight. */
void aio_rec_install(struct aio_rec *r);

/*
 * The hooks.  aio_rec_file_issue logs a WRITE (@iov holding @len bytes),
 * ZERO (@iov NULL), FSYNC or TRUNC (to @offset bytes, @len 0) of @f and returns the request's id for
 * aio_rec_file_done.  Call them only while aio_rec_active is set.
 */
uint64_t aio_rec_file_issue(const struct aio_file *f, int type, uint64_t offset, uint64_t len,
			    const struct iovec *iov, unsigned iovcnt);
void aio_rec_file_done(uint64_t id, int err);

/*
 * aio_rec_guest - log a guest request of @type (AIO_REC_G_WRITE, G_ZERO,
 * G_DISCARD, G_FLUSH) on @r; @iov holds the @len bytes of a G_WRITE, else
 * NULL.  Returns the id aio_rec_guest_done names.
 */
uint64_t aio_rec_guest(struct aio_rec *r, int type, unsigned flags, uint64_t offset, uint64_t len,
		       const struct iovec *iov, unsigned iovcnt);

/*
 * aio_rec_guest_size - log the guest disk's size and the granularity the
 * replay reads it back in (the first call only: a resize is not replayed).
 */
void aio_rec_guest_size(struct aio_rec *r, uint64_t size_bytes, uint64_t cluster_bytes);

/* aio_rec_guest_done - guest request @id was acknowledged with @err. */
void aio_rec_guest_done(struct aio_rec *r, uint64_t id, int err);

#endif
