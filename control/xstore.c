/* SPDX-License-Identifier: MIT */
/*
 * xstore: libxenstore behind 0/-errno (see xstore.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#include "errors.h"
#include "log.h"
#include "xstore.h"

/* xenstore's limits (xs_wire.h): payload 4096 bytes, absolute path 3072. */
#define XSTORE_VALUE_MAX 4096u

struct xstore {
	struct xs_handle *h;
};

void xstore_explain(int err)
{
	err = -err;
	const char *path = getenv("XENSTORED_PATH");

	if (err == ENOENT)
		log_err("xenstore: no xenstored socket (%s) and no /dev/xen/xenbus or "
			"/proc/xen/xenbus: is this a Xen dom0 or driver domain with xenstored "
			"running and xenfs mounted?",
			path ? path : "/var/run/xenstored/socket");
	else if (err == ECONNREFUSED)
		log_err("xenstore: the xenstored socket %s exists but nothing answers it: is "
			"xenstored running?",
			path ? path : "/var/run/xenstored/socket");
	else if (err == EACCES || err == EPERM)
		log_err("xenstore: permission denied opening xenstore (run as root)");
	else
		log_err("xenstore: cannot connect: %s", err_str(-err));
}

int xstore_open(struct xstore **out)
{
	struct xstore *xs = calloc(1, sizeof(*xs));
	int err;

	if (!xs)
		return -ENOMEM;
	/*
	 * Not XS_UNWATCH_FILTER: libxenstore 4.17 leaks every event that
	 * filter discards (valgrind shows it).  Stale events after an unwatch
	 * are harmless here: the backend re-reads state for each event.
	 */
	errno = 0;
	xs->h = xs_open(0);
	if (!xs->h) {
		err = errno ? errno : ENOENT;
		free(xs);
		return -err;
	}
	*out = xs;
	return 0;
}

void xstore_close(struct xstore *xs)
{
	if (!xs)
		return;
	xs_close(xs->h);
	free(xs);
}

int xstore_fd(struct xstore *xs)
{
	return xs_fileno(xs->h);
}

int xstore_read(struct xstore *xs, uint32_t txn, const char *path, char **out)
{
	unsigned len = 0;
	char *v;

	errno = 0;
	v = xs_read(xs->h, txn, path, &len);
	if (!v)
		return errno ? -errno : -ENOENT;
	if (len > XSTORE_VALUE_MAX || strlen(v) != len) {
		free(v);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int xstore_write(struct xstore *xs, uint32_t txn, const char *path, const char *val)
{
	if (!xs_write(xs->h, txn, path, val, strlen(val)))
		return neg_errno();
	return 0;
}

int xstore_writef(struct xstore *xs, uint32_t txn, const char *dir, const char *key,
		  const char *fmt, ...)
{
	char path[512], val[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(val))
		return -ENAMETOOLONG;
	n = snprintf(path, sizeof(path), "%s/%s", dir, key);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	return xstore_write(xs, txn, path, val);
}

int xstore_rm(struct xstore *xs, uint32_t txn, const char *path)
{
	if (!xs_rm(xs->h, txn, path) && errno != ENOENT)
		return neg_errno();
	return 0;
}

int xstore_dir(struct xstore *xs, const char *path, char ***names, unsigned *n)
{
	*n = 0;
	errno = 0;
	*names = xs_directory(xs->h, XBT_NULL, path, n);
	if (!*names)
		return errno ? -errno : -ENOENT;
	return 0;
}

int xstore_watch(struct xstore *xs, const char *path, const char *token)
{
	if (!xs_watch(xs->h, path, token))
		return neg_errno();
	return 0;
}

int xstore_unwatch(struct xstore *xs, const char *path, const char *token)
{
	if (!xs_unwatch(xs->h, path, token))
		return neg_errno();
	return 0;
}

int xstore_next_event(struct xstore *xs, char *path, size_t path_size, char *token,
		      size_t token_size)
{
	char **ev;
	int n, m;

	errno = 0;
	ev = xs_check_watch(xs->h);
	if (!ev)
		return errno && errno != EAGAIN ? -errno : -EAGAIN;
	n = snprintf(path, path_size, "%s", ev[XS_WATCH_PATH]);
	m = snprintf(token, token_size, "%s", ev[XS_WATCH_TOKEN]);
	free(ev);
	if (n < 0 || (size_t)n >= path_size || m < 0 || (size_t)m >= token_size)
		return -ENAMETOOLONG;
	return 0;
}

int xstore_txn_start(struct xstore *xs, uint32_t *txn)
{
	xs_transaction_t t = xs_transaction_start(xs->h);

	if (t == XBT_NULL)
		return neg_errno();
	*txn = t;
	return 0;
}

int xstore_txn_end(struct xstore *xs, uint32_t txn, bool abort)
{
	if (!xs_transaction_end(xs->h, txn, abort))
		return neg_errno();
	return 0;
}
