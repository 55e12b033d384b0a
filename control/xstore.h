/* SPDX-License-Identifier: MIT */
/*
 * xstore: the Xen backend's view of xenstore, over the real libxenstore.
 *
 * A thin layer that converts libxenstore's bool/NULL + errno results to
 * 0/-errno, gives the diagnosis libxenstore does not print when there is no
 * xenstore to talk to (blkif-notes.md §3.4), and bounds what it reads.
 * libxenstore honours XENSTORED_PATH, which is how the tests point it at
 * tests/tools/fake-xenstored.  One handle belongs to one thread.
 */
#ifndef QTAP_CONTROL_XSTORE_H
#define QTAP_CONTROL_XSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xstore;

/* No transaction. */
#define XSTORE_NO_TXN 0u

/* xstore_open - connect to xenstored (or the xenbus device).  0 or -errno. */
int xstore_open(struct xstore **out);

/* xstore_explain - log why xstore_open failed with @err, in words an administrator can act on. */
void xstore_explain(int err);

/* xstore_close - NULL is a no-op. */
void xstore_close(struct xstore *xs);

/* xstore_fd - readable when watch events are waiting (see xstore_next_event). */
int xstore_fd(struct xstore *xs);

/*
 * xstore_read - the value at @path as a NUL-terminated malloc'd string
 * (caller frees).  -ENOENT when there is no such node, -EINVAL when the
 * value holds a NUL byte or is longer than xenstore allows.
 */
int xstore_read(struct xstore *xs, uint32_t txn, const char *path, char **out);

/* xstore_write - write the string @val at @path.  0 or -errno. */
int xstore_write(struct xstore *xs, uint32_t txn, const char *path, const char *val);

/* xstore_writef - write a formatted value at @dir/@key. */
int xstore_writef(struct xstore *xs, uint32_t txn, const char *dir, const char *key,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* xstore_rm - remove @path and everything below it; a missing node is fine. */
int xstore_rm(struct xstore *xs, uint32_t txn, const char *path);

/*
 * xstore_dir - the names below @path: *names is one malloc'd block (free it
 * once), *n its count.  -ENOENT if @path does not exist.
 */
int xstore_dir(struct xstore *xs, const char *path, char ***names, unsigned *n);

/* xstore_watch / xstore_unwatch - @token comes back with each event. */
int xstore_watch(struct xstore *xs, const char *path, const char *token);
int xstore_unwatch(struct xstore *xs, const char *path, const char *token);

/*
 * xstore_next_event - the next pending watch event, without blocking: 0
 * with its path and token copied out, -EAGAIN when none is pending,
 * -ENAMETOOLONG (event consumed) when either does not fit.
 */
int xstore_next_event(struct xstore *xs, char *path, size_t path_size, char *token,
		      size_t token_size);

/* xstore_txn_start / xstore_txn_end - -EAGAIN from end means retry the lot. */
int xstore_txn_start(struct xstore *xs, uint32_t *txn);
int xstore_txn_end(struct xstore *xs, uint32_t txn, bool abort);

#endif
