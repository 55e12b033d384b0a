/* SPDX-License-Identifier: MIT */
/*
 * The frontend's ring keys (blkif-notes.md §2.1), read as hostile input:
 * strict decimal, every count bounded by what we advertised, grant
 * references and event channels non-zero (Xen never hands out 0), and an
 * unknown protocol refused rather than guessed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "xenbk.h"

int xbk_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (!s || !*s || strlen(s) > 10)
		return -EINVAL;
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

const char *xbk_state_name(unsigned state)
{
	static const char *const names[] = {
		"Unknown", "Initialising", "InitWait",	    "Initialised",  "Connected",
		"Closing", "Closed",	   "Reconfiguring", "Reconfigured",
	};

	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "invalid";
}

static int fail(char *err, size_t size, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t size, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
	return rc;
}

/*
 * Read @key as a u32.  @dflt_ok: a missing key is fine and leaves *out.
 * @min..@max bound it.
 */
static int read_u32(xbk_read_fn *read, void *ctx, const char *key, bool dflt_ok, uint32_t min,
		    uint32_t max, uint32_t *out, char *err, size_t err_size)
{
	CLEANUP_FREE char *v = NULL;
	int rc = read(ctx, key, &v);

	if (rc == -ENOENT && dflt_ok)
		return 0;
	if (rc == -ENOENT)
		return fail(err, err_size, rc, "frontend key %s is missing", key);
	if (rc < 0)
		return fail(err, err_size, rc, "cannot read frontend key %s: %s", key,
			    strerror(-rc));
	rc = xbk_parse_u32(v, out);
	if (rc < 0 || *out < min || *out > max)
		return fail(err, err_size, -EINVAL,
			    "frontend key %s is '%.40s': not a number from %u to %u", key, v, min,
			    max);
	return 0;
}

/* The ring page order: ring-page-order, or the legacy num-ring-pages. */
static int read_order(xbk_read_fn *read, void *ctx, const struct xbk_limits *lim, unsigned *order,
		      char *err, size_t err_size)
{
	uint32_t o = 0, pages = 0;
	int rc;

	rc = read_u32(read, ctx, "ring-page-order", true, 0, lim->max_ring_page_order, &o, err,
		      err_size);
	if (rc < 0 || o > 0) {
		*order = o;
		return rc;
	}
	rc = read_u32(read, ctx, "num-ring-pages", true, 0, 1u << lim->max_ring_page_order, &pages,
		      err, err_size);
	if (rc < 0)
		return rc;
	if (pages > 1 && (pages & (pages - 1)))
		return fail(err, err_size, -EINVAL,
			    "frontend key num-ring-pages is %u: not a power of two", pages);
	for (o = 0; (1u << o) < pages; o++)
		;
	*order = o;
	return 0;
}

static int read_proto(xbk_read_fn *read, void *ctx, enum xbk_proto *proto, char *err,
		      size_t err_size)
{
	CLEANUP_FREE char *v = NULL;
	int rc = read(ctx, "protocol", &v);

	if (rc == -ENOENT) {
		/* What Linux blkback and tapback assume: an old 32-bit PV guest. */
#if defined(__x86_64__) || defined(__i386__)
		*proto = XBK_PROTO_X86_32;
#else
		*proto = XBK_PROTO_NATIVE;
#endif
		return 0;
	}
	if (rc < 0)
		return fail(err, err_size, rc, "cannot read frontend key protocol: %s",
			    strerror(-rc));
#if defined(__x86_64__) || defined(__i386__)
	if (strcmp(v, "x86_32-abi") == 0) {
		*proto = XBK_PROTO_X86_32;
		return 0;
	}
	if (strcmp(v, "x86_64-abi") == 0) {
		*proto = XBK_PROTO_X86_64;
		return 0;
	}
#else
	if (strcmp(v, "arm-abi") == 0) {
		*proto = XBK_PROTO_NATIVE;
		return 0;
	}
#endif
	return fail(err, err_size, -EINVAL, "frontend key protocol is '%.40s': not an ABI we serve",
		    v);
}

/* One queue's refs and event channel; @prefix is "" or "queue-N/". */
static int read_queue(xbk_read_fn *read, void *ctx, const char *prefix, unsigned order,
		      uint32_t *refs, uint32_t *evtchn, char *err, size_t err_size)
{
	char key[64];
	unsigned i;
	int rc;

	for (i = 0; i < (1u << order); i++) {
		snprintf(key, sizeof(key), "%sring-ref%u", prefix, i);
		if (order == 0) {
			/* One page: Linux writes ring-ref; ring-ref0 is also seen. */
			CLEANUP_FREE char *v = NULL;

			if (read(ctx, key, &v) == -ENOENT)
				snprintf(key, sizeof(key), "%sring-ref", prefix);
		}
		rc = read_u32(read, ctx, key, false, 1, UINT32_MAX, &refs[i], err, err_size);
		if (rc < 0)
			return rc;
	}
	snprintf(key, sizeof(key), "%sevent-channel", prefix);
	return read_u32(read, ctx, key, false, 1, UINT32_MAX, evtchn, err, err_size);
}

int xbk_read_ring(xbk_read_fn *read, void *ctx, const struct xbk_limits *limits,
		  struct xbk_ring *ring, char *err, size_t err_size)
{
	uint32_t nq = 1;
	char prefix[32];
	unsigned q;
	int rc;

	rc = read_order(read, ctx, limits, &ring->order, err, err_size);
	if (rc < 0)
		return rc;
	rc = read_u32(read, ctx, "multi-queue-num-queues", true, 1, limits->max_queues, &nq, err,
		      err_size);
	if (rc < 0)
		return rc;
	ring->nr_queues = nq;
	rc = read_proto(read, ctx, &ring->proto, err, err_size);
	if (rc < 0)
		return rc;
	if (nq == 1)
		return read_queue(read, ctx, "", ring->order, ring->refs[0], &ring->evtchn[0], err,
				  err_size);
	for (q = 0; q < nq; q++) {
		snprintf(prefix, sizeof(prefix), "queue-%u/", q);
		rc = read_queue(read, ctx, prefix, ring->order, ring->refs[q], &ring->evtchn[q],
				err, err_size);
		if (rc < 0)
			return rc;
	}
	return 0;
}
