// SPDX-License-Identifier: MIT
/*
 * NBD metadata contexts: NBD_OPT_LIST_META_CONTEXT and
 * NBD_OPT_SET_META_CONTEXT.
 *
 * The contexts are the ones qemu-nbd offers, with its names and query
 * syntax, so that QEMU's and libnbd's tools work unchanged:
 *
 *   base:allocation          HOLE and ZERO, from the image chain
 *   qemu:allocation-depth    0 unallocated, 1 the top image, 2 its backing...
 *   qemu:dirty-bitmap:NAME   DIRTY, from the image's persistent bitmap NAME
 *
 * A query names one context; in LIST, a query that stops after a namespace
 * ("base:", "qemu:", "qemu:dirty-bitmap:") lists every context under it, and
 * no query at all lists everything.  Unknown namespaces select nothing,
 * which is not an error.  Context ids are fixed (nbd-proto.h), so the
 * selection a session keeps is a few bits.
 */
#include <errno.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/nbd-proto.h"

/* A set of contexts: the two fixed ones and the bitmaps. */
struct meta_set {
	bool base;
	bool depth;
	uint64_t bitmaps;
};

static bool has_prefix(const uint8_t *s, uint32_t len, const char *prefix, uint32_t *plen)
{
	*plen = (uint32_t)strlen(prefix);
	return len >= *plen && memcmp(s, prefix, *plen) == 0;
}

static bool equals(const uint8_t *s, uint32_t len, const char *str)
{
	return strlen(str) == len && memcmp(s, str, len) == 0;
}

static uint64_t all_bitmaps(const struct nbdp_export *e)
{
	return e->nr_bitmaps >= 64 ? ~0ull : (1ull << e->nr_bitmaps) - 1;
}

/* Add what query @q (@len bytes) selects to @m; @list: LIST semantics. */
static void match_query(const struct nbdp_export *e, const uint8_t *q, uint32_t len, bool list,
			struct meta_set *m)
{
	uint32_t n;
	unsigned i;

	if (has_prefix(q, len, "base:", &n)) {
		if (equals(q + n, len - n, "allocation") || (list && len == n))
			m->base = true;
		return;
	}
	if (!has_prefix(q, len, "qemu:", &n))
		return;
	q += n;
	len -= n;
	if (list && len == 0) {
		m->depth = true;
		m->bitmaps |= all_bitmaps(e);
		return;
	}
	if (equals(q, len, "allocation-depth")) {
		m->depth = true;
		return;
	}
	if (!has_prefix(q, len, "dirty-bitmap:", &n))
		return;
	q += n;
	len -= n;
	if (list && len == 0) {
		m->bitmaps |= all_bitmaps(e);
		return;
	}
	for (i = 0; i < e->nr_bitmaps; i++) {
		if (equals(q, len, e->bitmaps[i]))
			m->bitmaps |= 1ull << i;
	}
}

/* One NBD_REP_META_CONTEXT: @id, then the name in up to three pieces. */
static int rep_context(struct nbdp_buf *out, uint32_t opt, uint32_t id, const char *a,
		       const char *b)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	uint8_t be[4];

	put_be32(be, id);
	return nbdp_rep_hdr(out, opt, NBDP_REP_META_CONTEXT, (uint32_t)(4 + la + lb)) ?:
		       nbdp_buf_put(out, be, 4) ?: nbdp_buf_put(out, a, la) ?:
							  nbdp_buf_put(out, b, lb);
}

/* The replies for @m, in id order, then the ACK.  LIST sends id 0. */
static int send_set(const struct nbdp_export *e, uint32_t opt, const struct meta_set *m,
		    struct nbdp_buf *out)
{
	bool list = opt == NBDP_OPT_LIST_META_CONTEXT;
	unsigned i;
	int err = 0;

	if (m->base)
		err = rep_context(out, opt, list ? 0 : NBDP_CTX_BASE_ALLOCATION, "base:allocation",
				  NULL);
	if (!err && m->depth)
		err = rep_context(out, opt, list ? 0 : NBDP_CTX_ALLOCATION_DEPTH,
				  "qemu:allocation-depth", NULL);
	for (i = 0; !err && i < e->nr_bitmaps; i++) {
		if (m->bitmaps & (1ull << i))
			err = rep_context(out, opt, list ? 0 : NBDP_CTX_BITMAP0 + i,
					  "qemu:dirty-bitmap:", e->bitmaps[i]);
	}
	return err ?: nbdp_rep_hdr(out, opt, NBDP_REP_ACK, 0);
}

/*
 * Parse the option's data into @m.  Returns 0, or the NBD_REP_ERR_* to
 * answer with (and the message in @why).
 */
static uint32_t parse(const struct nbdp_export *e, bool list, const uint8_t *data, uint32_t len,
		      struct meta_set *m, const char **why)
{
	uint32_t nlen, nq, qlen, pos, i;

	*why = "malformed option data";
	if (len < 8 || (nlen = get_be32(data)) > len - 8)
		return NBDP_REP_ERR_INVALID;
	if (nlen > NBDP_STRING_MAX)
		return NBDP_REP_ERR_INVALID;
	if (!nbdp_name_matches(e, data + 4, nlen)) {
		*why = "no such export";
		return NBDP_REP_ERR_UNKNOWN;
	}
	pos = 4 + nlen;
	nq = get_be32(data + pos);
	pos += 4;
	if (list && nq == 0) {
		*m = (struct meta_set){ true, true, all_bitmaps(e) };
		return pos == len ? 0 : NBDP_REP_ERR_INVALID;
	}
	for (i = 0; i < nq; i++) {
		if (len - pos < 4 || (qlen = get_be32(data + pos)) > len - pos - 4)
			return NBDP_REP_ERR_INVALID;
		if (qlen > NBDP_STRING_MAX) {
			*why = "query longer than 4096 bytes";
			return NBDP_REP_ERR_INVALID;
		}
		match_query(e, data + pos + 4, qlen, list, m);
		pos += 4 + qlen;
	}
	return pos == len ? 0 : NBDP_REP_ERR_INVALID;
}

int nbdp_meta_reply(struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		    const uint8_t *data, uint32_t len, struct nbdp_buf *out)
{
	bool list = opt == NBDP_OPT_LIST_META_CONTEXT;
	struct meta_set m = { 0 };
	const char *why;
	uint32_t rep;

	if (!list) {
		s->base = s->depth = false;
		s->bitmaps = 0;
	}
	if (!s->structured)
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_INVALID,
				    "metadata contexts need structured replies first");
	rep = parse(e, list, data, len, &m, &why);
	if (rep)
		return nbdp_rep_err(out, opt, rep, "%s", why);
	if (!list) {
		s->base = m.base;
		s->depth = m.depth;
		s->bitmaps = m.bitmaps;
	}
	return send_set(e, opt, &m, out);
}

unsigned nbdp_meta_count(const struct nbdp_session *s)
{
	return (unsigned)s->base + (unsigned)s->depth + (unsigned)__builtin_popcountll(s->bitmaps);
}
