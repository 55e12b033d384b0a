// SPDX-License-Identifier: MIT
/*
 * The NBD server's socket-free halves: option haggling, metadata context
 * queries, request checks and reply building, byte for byte against
 * doc/proto.md.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tapdisk/nbd-proto.h"

static const char *const bitmaps[] = { "b0", "backup-1" };

static const struct nbdp_export export_rw = {
	.name = "disk",
	.description = "a test disk",
	.size_bytes = 1 << 20,
	.can_trim = true,
	.can_zero = true,
	.can_fast_zero = true,
	.min_block = 1,
	.pref_block = 4096,
	.max_block = NBDP_MAX_BLOCK_BYTES,
	.bitmaps = bitmaps,
	.nr_bitmaps = 2,
};

/* One option reply parsed out of a reply buffer. */
struct rep {
	uint32_t opt, type, len;
	const uint8_t *data;
};

/* Split @b into replies; returns how many (at most @max). */
static unsigned parse_replies(const struct nbdp_buf *b, struct rep *r, unsigned max)
{
	size_t pos = 0;
	unsigned n = 0;

	while (pos < b->len) {
		assert_true(b->len - pos >= NBDP_REP_HDR_BYTES);
		assert_true(n < max);
		assert_true(get_be64(b->data + pos) == NBDP_REP_MAGIC);
		r[n].opt = get_be32(b->data + pos + 8);
		r[n].type = get_be32(b->data + pos + 12);
		r[n].len = get_be32(b->data + pos + 16);
		r[n].data = b->data + pos + NBDP_REP_HDR_BYTES;
		pos += NBDP_REP_HDR_BYTES + r[n].len;
		assert_true(pos <= b->len);
		n++;
	}
	return n;
}

/* Option data for GO/INFO: name, then the info requests. */
static uint32_t go_data(uint8_t *d, const char *name, const uint16_t *reqs, unsigned nreq)
{
	uint32_t nlen = (uint32_t)strlen(name), pos;
	unsigned i;

	put_be32(d, nlen);
	memcpy(d + 4, name, nlen);
	put_be16(d + 4 + nlen, (uint16_t)nreq);
	pos = 6 + nlen;
	for (i = 0; i < nreq; i++, pos += 2)
		put_be16(d + pos, reqs[i]);
	return pos;
}

/* Option data for the meta context options. */
static uint32_t meta_data(uint8_t *d, const char *name, const char *const *q, unsigned nq)
{
	uint32_t nlen = (uint32_t)strlen(name), pos, qlen;
	unsigned i;

	put_be32(d, nlen);
	memcpy(d + 4, name, nlen);
	put_be32(d + 4 + nlen, nq);
	pos = 8 + nlen;
	for (i = 0; i < nq; i++) {
		qlen = (uint32_t)strlen(q[i]);
		put_be32(d + pos, qlen);
		memcpy(d + pos + 4, q[i], qlen);
		pos += 4 + qlen;
	}
	return pos;
}

static enum nbdp_opt_next handle(struct nbdp_session *s, uint32_t opt, const uint8_t *d,
				 uint32_t len, struct nbdp_buf *out)
{
	enum nbdp_opt_next next;

	out->len = 0;
	assert_int_equal(nbdp_opt_handle(s, &export_rw, opt, d, len, out, &next), 0);
	return next;
}

static void test_greeting_and_client_flags(void **state)
{
	struct nbdp_session s;
	uint8_t g[NBDP_GREETING_BYTES];

	nbdp_greeting(g);
	assert_memory_equal(g, "NBDMAGICIHAVEOPT", 16);
	assert_int_equal(get_be16(g + 16), NBDP_FLAG_FIXED_NEWSTYLE | NBDP_FLAG_NO_ZEROES);

	assert_int_equal(nbdp_client_flags(&s, NBDP_FLAG_C_FIXED_NEWSTYLE), 0);
	assert_false(s.no_zeroes);
	assert_int_equal(nbdp_client_flags(&s, 3), 0);
	assert_true(s.no_zeroes);
	assert_int_equal(nbdp_client_flags(&s, 1u << 2), -EPROTO);
	assert_int_equal(nbdp_client_flags(&s, 0x80000001u), -EPROTO);
}

static void test_go_default_export(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[8];
	uint8_t d[64];
	unsigned n;
	uint16_t flags;

	assert_int_equal(handle(&s, NBDP_OPT_GO, d, go_data(d, "", NULL, 0), &out),
			 NBDP_NEXT_TRANSMIT);
	n = parse_replies(&out, r, 8);
	assert_int_equal(n, 3);
	assert_int_equal(r[0].type, NBDP_REP_INFO);
	assert_int_equal(r[0].len, 12);
	assert_int_equal(get_be16(r[0].data), NBDP_INFO_EXPORT);
	assert_true(get_be64(r[0].data + 2) == 1 << 20);
	flags = get_be16(r[0].data + 10);
	assert_true(flags & NBDP_FLAG_HAS_FLAGS);
	assert_true(flags & NBDP_FLAG_SEND_FUA);
	assert_true(flags & NBDP_FLAG_SEND_TRIM);
	assert_true(flags & NBDP_FLAG_SEND_FAST_ZERO);
	assert_true(flags & NBDP_FLAG_CAN_MULTI_CONN);
	assert_false(flags & NBDP_FLAG_SEND_DF); /* no structured replies yet */
	assert_false(flags & NBDP_FLAG_READ_ONLY);
	assert_int_equal(get_be16(r[1].data), NBDP_INFO_BLOCK_SIZE);
	assert_int_equal(get_be32(r[1].data + 2), 1);
	assert_int_equal(get_be32(r[1].data + 6), 4096);
	assert_int_equal(get_be32(r[1].data + 10), NBDP_MAX_BLOCK_BYTES);
	assert_int_equal(r[2].type, NBDP_REP_ACK);
	assert_int_equal(r[2].opt, NBDP_OPT_GO);
	nbdp_buf_free(&out);
}

static void test_info_name_description(void **state)
{
	static const uint16_t reqs[] = { NBDP_INFO_NAME, NBDP_INFO_DESCRIPTION, 77 };
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[8];
	uint8_t d[64];

	assert_int_equal(handle(&s, NBDP_OPT_INFO, d, go_data(d, "disk", reqs, 3), &out),
			 NBDP_NEXT_OPTION);
	assert_int_equal(parse_replies(&out, r, 8), 5);
	assert_int_equal(get_be16(r[1].data), NBDP_INFO_NAME);
	assert_int_equal(r[1].len, 2 + 4);
	assert_memory_equal(r[1].data + 2, "disk", 4);
	assert_int_equal(get_be16(r[2].data), NBDP_INFO_DESCRIPTION);
	assert_memory_equal(r[2].data + 2, "a test disk", 11);
	assert_int_equal(r[4].type, NBDP_REP_ACK);
	nbdp_buf_free(&out);
}

static void test_go_errors(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[4];
	uint8_t d[64];
	uint32_t len;

	/* an export we do not have: the client may try another */
	len = go_data(d, "nosuch", NULL, 0);
	assert_int_equal(handle(&s, NBDP_OPT_GO, d, len, &out), NBDP_NEXT_OPTION);
	assert_int_equal(parse_replies(&out, r, 4), 1);
	assert_int_equal(r[0].type, NBDP_REP_ERR_UNKNOWN);
	assert_true(r[0].len > 0);

	/* a name length past the data, a request count that does not match */
	put_be32(d, 1000);
	assert_int_equal(handle(&s, NBDP_OPT_GO, d, 10, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	len = go_data(d, "disk", NULL, 0);
	put_be16(d + 8, 3);
	assert_int_equal(handle(&s, NBDP_OPT_GO, d, len, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	assert_int_equal(handle(&s, NBDP_OPT_GO, d, 3, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	nbdp_buf_free(&out);
}

static void test_export_name(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };

	assert_int_equal(handle(&s, NBDP_OPT_EXPORT_NAME, (const uint8_t *)"disk", 4, &out),
			 NBDP_NEXT_TRANSMIT);
	assert_int_equal(out.len, 10 + 124);
	assert_true(get_be64(out.data) == 1 << 20);
	s.no_zeroes = true;
	assert_int_equal(handle(&s, NBDP_OPT_EXPORT_NAME, NULL, 0, &out), NBDP_NEXT_TRANSMIT);
	assert_int_equal(out.len, 10);
	/* EXPORT_NAME cannot carry an error: a wrong name hangs up */
	assert_int_equal(handle(&s, NBDP_OPT_EXPORT_NAME, (const uint8_t *)"dis", 3, &out),
			 NBDP_NEXT_CLOSE);
	assert_int_equal(out.len, 0);
	nbdp_buf_free(&out);
}

static void test_list_abort_unsupported(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[4];

	assert_int_equal(handle(&s, NBDP_OPT_LIST, NULL, 0, &out), NBDP_NEXT_OPTION);
	assert_int_equal(parse_replies(&out, r, 4), 2);
	assert_int_equal(r[0].type, NBDP_REP_SERVER);
	assert_int_equal(get_be32(r[0].data), 4);
	assert_memory_equal(r[0].data + 4, "disk", 4);
	assert_int_equal(r[1].type, NBDP_REP_ACK);

	assert_int_equal(handle(&s, NBDP_OPT_LIST, (const uint8_t *)"x", 1, &out),
			 NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);

	assert_int_equal(handle(&s, NBDP_OPT_STARTTLS, NULL, 0, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_UNSUP);
	assert_int_equal(handle(&s, 0x12345, NULL, 0, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_UNSUP);
	assert_int_equal(r[0].opt, 0x12345);

	out.len = 0;
	assert_int_equal(nbdp_opt_too_big(99, &out), 0);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_TOO_BIG);

	assert_int_equal(handle(&s, NBDP_OPT_ABORT, NULL, 0, &out), NBDP_NEXT_CLOSE);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ACK);
	nbdp_buf_free(&out);
}

static void test_structured_reply_sets_df(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[4];
	uint8_t d[64] = { 0 };

	assert_int_equal(handle(&s, NBDP_OPT_STRUCTURED_REPLY, d, 1, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	assert_false(s.structured);
	assert_int_equal(handle(&s, NBDP_OPT_STRUCTURED_REPLY, NULL, 0, &out), NBDP_NEXT_OPTION);
	parse_replies(&out, r, 4);
	assert_int_equal(r[0].type, NBDP_REP_ACK);
	assert_true(s.structured);
	assert_true(nbdp_tx_flags(&export_rw, true) & NBDP_FLAG_SEND_DF);
	nbdp_buf_free(&out);
}

static void test_readonly_flags(void **state)
{
	struct nbdp_export ro = export_rw;
	uint16_t f;

	ro.readonly = true;
	f = nbdp_tx_flags(&ro, false);
	assert_true(f & NBDP_FLAG_READ_ONLY);
	assert_true(f & NBDP_FLAG_SEND_FLUSH);
	assert_false(f & (NBDP_FLAG_SEND_TRIM | NBDP_FLAG_SEND_WRITE_ZEROES | NBDP_FLAG_SEND_FUA));
}

/* Run a meta option; returns the replies, checks the final one. */
static unsigned meta(struct nbdp_session *s, uint32_t opt, const char *name, const char *const *q,
		     unsigned nq, struct nbdp_buf *out, struct rep *r)
{
	uint8_t d[512];
	unsigned n;

	handle(s, opt, d, meta_data(d, name, q, nq), out);
	n = parse_replies(out, r, 16);
	assert_true(n >= 1);
	return n;
}

static void assert_context(const struct rep *r, uint32_t id, const char *name)
{
	assert_int_equal(r->type, NBDP_REP_META_CONTEXT);
	assert_int_equal(get_be32(r->data), id);
	assert_int_equal(r->len, 4 + strlen(name));
	assert_memory_equal(r->data + 4, name, strlen(name));
}

static void test_meta_list(void **state)
{
	static const char *const qemu[] = { "qemu:" };
	static const char *const bm[] = { "qemu:dirty-bitmap:" };
	struct nbdp_session s = { 0 };
	struct nbdp_buf out = { 0 };
	struct rep r[16];

	/* before structured replies: refused */
	assert_int_equal(meta(&s, NBDP_OPT_LIST_META_CONTEXT, "", NULL, 0, &out, r), 1);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);

	s.structured = true;
	assert_int_equal(meta(&s, NBDP_OPT_LIST_META_CONTEXT, "disk", NULL, 0, &out, r), 5);
	assert_context(&r[0], 0, "base:allocation");
	assert_context(&r[1], 0, "qemu:allocation-depth");
	assert_context(&r[2], 0, "qemu:dirty-bitmap:b0");
	assert_context(&r[3], 0, "qemu:dirty-bitmap:backup-1");
	assert_int_equal(r[4].type, NBDP_REP_ACK);

	assert_int_equal(meta(&s, NBDP_OPT_LIST_META_CONTEXT, "", qemu, 1, &out, r), 4);
	assert_context(&r[0], 0, "qemu:allocation-depth");
	assert_int_equal(meta(&s, NBDP_OPT_LIST_META_CONTEXT, "", bm, 1, &out, r), 3);
	assert_context(&r[1], 0, "qemu:dirty-bitmap:backup-1");
	/* listing selects nothing */
	assert_int_equal(nbdp_meta_count(&s), 0);

	assert_int_equal(meta(&s, NBDP_OPT_LIST_META_CONTEXT, "other", NULL, 0, &out, r), 1);
	assert_int_equal(r[0].type, NBDP_REP_ERR_UNKNOWN);
	nbdp_buf_free(&out);
}

static void test_meta_set(void **state)
{
	static const char *const q[] = { "base:allocation", "qemu:dirty-bitmap:backup-1",
					 "qemu:dirty-bitmap:nosuch", "x-other:thing",
					 "base:allocation" };
	static const char *const prefix_only[] = { "base:", "qemu:" };
	struct nbdp_session s = { .structured = true };
	struct nbdp_buf out = { 0 };
	struct rep r[16];
	uint8_t d[64];

	assert_int_equal(meta(&s, NBDP_OPT_SET_META_CONTEXT, "disk", q, 5, &out, r), 3);
	assert_context(&r[0], NBDP_CTX_BASE_ALLOCATION, "base:allocation");
	assert_context(&r[1], NBDP_CTX_BITMAP0 + 1, "qemu:dirty-bitmap:backup-1");
	assert_int_equal(r[2].type, NBDP_REP_ACK);
	assert_true(s.base);
	assert_false(s.depth);
	assert_true(s.bitmaps == 2);
	assert_int_equal(nbdp_meta_count(&s), 2);

	/* SET with a namespace alone selects nothing, and replaces the set */
	assert_int_equal(meta(&s, NBDP_OPT_SET_META_CONTEXT, "", prefix_only, 2, &out, r), 1);
	assert_int_equal(r[0].type, NBDP_REP_ACK);
	assert_int_equal(nbdp_meta_count(&s), 0);

	/* malformed: a query length past the end; the selection is cleared */
	meta(&s, NBDP_OPT_SET_META_CONTEXT, "disk", q, 1, &out, r);
	assert_int_equal(nbdp_meta_count(&s), 1);
	put_be32(d, 0);
	put_be32(d + 4, 1);
	put_be32(d + 8, 100);
	handle(&s, NBDP_OPT_SET_META_CONTEXT, d, 20, &out);
	parse_replies(&out, r, 16);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	assert_int_equal(nbdp_meta_count(&s), 0);
	/* trailing bytes after the last query */
	put_be32(d + 4, 0);
	handle(&s, NBDP_OPT_SET_META_CONTEXT, d, 9, &out);
	parse_replies(&out, r, 16);
	assert_int_equal(r[0].type, NBDP_REP_ERR_INVALID);
	nbdp_buf_free(&out);
}

static void request(uint8_t *h, uint16_t flags, uint16_t type, uint64_t off, uint32_t len)
{
	put_be32(h, NBDP_REQUEST_MAGIC);
	put_be16(h + 4, flags);
	put_be16(h + 6, type);
	put_be64(h + 8, 0x1122334455667788ull);
	put_be64(h + 16, off);
	put_be32(h + 24, len);
}

static uint32_t check(const struct nbdp_session *s, const struct nbdp_export *e, uint16_t flags,
		      uint16_t type, uint64_t off, uint32_t len, bool *disc)
{
	struct nbdp_request r;
	uint8_t h[NBDP_REQUEST_BYTES];

	request(h, flags, type, off, len);
	assert_int_equal(nbdp_request_decode(h, &r), 0);
	assert_true(r.cookie == 0x1122334455667788ull);
	return nbdp_request_check(s, e, &r, disc);
}

static void test_request_checks(void **state)
{
	struct nbdp_session s = { 0 };
	struct nbdp_export ro = export_rw;
	const struct nbdp_export *e = &export_rw;
	struct nbdp_request r;
	uint8_t h[NBDP_REQUEST_BYTES];
	bool disc;

	request(h, 0, NBDP_CMD_READ, 0, 512);
	h[0] ^= 1;
	assert_int_equal(nbdp_request_decode(h, &r), -EPROTO);

	assert_int_equal(check(&s, e, 0, NBDP_CMD_READ, 0, 4096, &disc), 0);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_READ, (1 << 20) - 1, 1, &disc), 0);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_READ, (1 << 20) - 1, 2, &disc), NBDP_EINVAL);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_READ, UINT64_MAX, 2, &disc), NBDP_EINVAL);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_WRITE, UINT64_MAX - 1, 4, &disc), NBDP_ENOSPC);
	assert_false(disc);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_READ, 0, NBDP_MAX_BLOCK_BYTES + 1, &disc),
			 NBDP_EOVERFLOW);
	assert_false(disc);
	check(&s, e, 0, NBDP_CMD_WRITE, 0, NBDP_MAX_BLOCK_BYTES + 1, &disc);
	assert_true(disc);

	/* flags: DF only with structured replies, REQ_ONE only on BLOCK_STATUS */
	assert_int_equal(check(&s, e, NBDP_CMD_FLAG_DF, NBDP_CMD_READ, 0, 1, &disc), NBDP_EINVAL);
	s.structured = true;
	assert_int_equal(check(&s, e, NBDP_CMD_FLAG_DF, NBDP_CMD_READ, 0, 1, &disc), 0);
	assert_int_equal(check(&s, e, NBDP_CMD_FLAG_REQ_ONE, NBDP_CMD_READ, 0, 1, &disc),
			 NBDP_EINVAL);
	assert_int_equal(check(&s, e, 1u << 15, NBDP_CMD_WRITE, 0, 1, &disc), NBDP_EINVAL);
	assert_int_equal(check(&s, e, NBDP_CMD_FLAG_FUA | NBDP_CMD_FLAG_NO_HOLE,
			       NBDP_CMD_WRITE_ZEROES, 0, 4096, &disc),
			 0);

	/* FLUSH takes no range; BLOCK_STATUS needs a context; unknown commands */
	assert_int_equal(check(&s, e, 0, NBDP_CMD_FLUSH, 0, 0, &disc), 0);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_FLUSH, 512, 0, &disc), NBDP_EINVAL);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_BLOCK_STATUS, 0, 512, &disc), NBDP_EINVAL);
	s.base = true;
	assert_int_equal(check(&s, e, NBDP_CMD_FLAG_REQ_ONE, NBDP_CMD_BLOCK_STATUS, 0, 512, &disc),
			 0);
	assert_int_equal(check(&s, e, 0, NBDP_CMD_BLOCK_STATUS, 0, 0, &disc), NBDP_EINVAL);
	assert_int_equal(check(&s, e, 0, 99, 0, 0, &disc), NBDP_EINVAL);

	/* a read-only export refuses every write with EPERM */
	ro.readonly = true;
	ro.can_trim = ro.can_zero = false; /* as a read-only vbd reports */
	assert_int_equal(check(&s, &ro, 0, NBDP_CMD_WRITE, 0, 512, &disc), NBDP_EPERM);
	assert_int_equal(check(&s, &ro, 0, NBDP_CMD_TRIM, 0, 512, &disc), NBDP_EPERM);
	assert_int_equal(check(&s, &ro, 0, NBDP_CMD_WRITE_ZEROES, 0, 512, &disc), NBDP_EPERM);
	assert_int_equal(check(&s, &ro, 0, NBDP_CMD_FLUSH, 0, 0, &disc), 0);
	ro.readonly = false;
	ro.can_trim = ro.can_zero = true;
	ro.can_fast_zero = false;
	assert_int_equal(
		check(&s, &ro, NBDP_CMD_FLAG_FAST_ZERO, NBDP_CMD_WRITE_ZEROES, 0, 512, &disc),
		NBDP_EINVAL);
}

static void test_errno_mapping(void **state)
{
	assert_int_equal(nbdp_errno(0), 0);
	assert_int_equal(nbdp_errno(-EROFS), NBDP_EPERM);
	assert_int_equal(nbdp_errno(-EDQUOT), NBDP_ENOSPC);
	assert_int_equal(nbdp_errno(-EOPNOTSUPP), NBDP_ENOTSUP);
	assert_int_equal(nbdp_errno(-ESHUTDOWN), NBDP_ESHUTDOWN);
	assert_int_equal(nbdp_errno(-ELOOP), NBDP_EIO);
}

static void test_reply_headers(void **state)
{
	uint8_t b[64];
	size_t n;

	nbdp_simple_reply(b, NBDP_EIO, 7);
	assert_int_equal(get_be32(b), NBDP_SIMPLE_REPLY_MAGIC);
	assert_int_equal(get_be32(b + 4), NBDP_EIO);
	assert_true(get_be64(b + 8) == 7);

	n = nbdp_error_chunk(b, sizeof(b), 9, NBDP_EINVAL, "bad");
	assert_int_equal(n, 20 + 6 + 3);
	assert_int_equal(get_be32(b), NBDP_STRUCTURED_REPLY_MAGIC);
	assert_int_equal(get_be16(b + 4), NBDP_REPLY_FLAG_DONE);
	assert_int_equal(get_be16(b + 6), NBDP_REPLY_TYPE_ERROR);
	assert_true(get_be64(b + 8) == 9);
	assert_int_equal(get_be32(b + 16), 9);
	assert_int_equal(get_be32(b + 20), NBDP_EINVAL);
	assert_int_equal(get_be16(b + 24), 3);
	assert_memory_equal(b + 26, "bad", 3);
	/* a message that does not fit is cut, never overflowing */
	n = nbdp_error_chunk(b, 30, 9, NBDP_EINVAL, "a much longer message");
	assert_int_equal(n, 30);
	assert_int_equal(get_be16(b + 24), 4);
}

static void test_read_runs(void **state)
{
	static uint8_t buf[5 * 4096];
	struct nbdp_run runs[8];
	unsigned n;

	memset(buf, 0, sizeof(buf));
	/* all zeros: one hole */
	n = nbdp_read_runs(buf, 0, sizeof(buf), 4096, runs, 8);
	assert_int_equal(n, 1);
	assert_true(runs[0].zero);
	assert_int_equal(runs[0].len, sizeof(buf));

	/* data in the second and fourth 4k of the disk, read from offset 1000 */
	buf[4096 - 1000 + 5] = 1;
	buf[3 * 4096 - 1000 + 4095] = 1;
	n = nbdp_read_runs(buf, 1000, 4 * 4096, 4096, runs, 8);
	assert_int_equal(n, 5);
	assert_true(runs[0].zero && runs[0].off == 0 && runs[0].len == 4096 - 1000);
	assert_true(!runs[1].zero && runs[1].off == 4096 - 1000 && runs[1].len == 4096);
	assert_true(runs[2].zero && runs[2].len == 4096);
	assert_true(!runs[3].zero && runs[3].len == 4096);
	assert_true(runs[4].zero && runs[4].len == 1000);

	/* out of runs: the rest is data */
	n = nbdp_read_runs(buf, 1000, 4 * 4096, 4096, runs, 2);
	assert_int_equal(n, 2);
	assert_true(runs[0].zero);
	assert_false(runs[1].zero);
	assert_int_equal(runs[1].off + runs[1].len, 4 * 4096);
	/* sub-grain reads */
	n = nbdp_read_runs(buf + 10, 10, 7, 4096, runs, 8);
	assert_int_equal(n, 1);
	assert_true(runs[0].zero);
	assert_int_equal(runs[0].len, 7);
}

static void test_block_status_descriptors(void **state)
{
	uint8_t desc[3 * 8];
	struct nbdp_bs bs;

	nbdp_bs_init(&bs, desc, 3);
	assert_true(nbdp_bs_add(&bs, 4096, NBDP_STATE_HOLE));
	assert_true(nbdp_bs_add(&bs, 4096, NBDP_STATE_HOLE));
	assert_true(nbdp_bs_add(&bs, 0, 0));
	assert_true(nbdp_bs_add(&bs, 512, 0));
	assert_true(nbdp_bs_add(&bs, 512, NBDP_STATE_HOLE | NBDP_STATE_ZERO));
	assert_false(nbdp_bs_add(&bs, 512, 0));
	assert_true(nbdp_bs_add(&bs, 512, NBDP_STATE_HOLE | NBDP_STATE_ZERO));
	assert_int_equal(bs.nr, 3);
	assert_int_equal(get_be32(desc), 8192);
	assert_int_equal(get_be32(desc + 4), NBDP_STATE_HOLE);
	assert_int_equal(get_be32(desc + 8), 512);
	assert_int_equal(get_be32(desc + 12), 0);
	assert_int_equal(get_be32(desc + 16), 1024);
	assert_true(bs.covered == 8192 + 512 + 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_and_client_flags),
		cmocka_unit_test(test_go_default_export),
		cmocka_unit_test(test_info_name_description),
		cmocka_unit_test(test_go_errors),
		cmocka_unit_test(test_export_name),
		cmocka_unit_test(test_list_abort_unsupported),
		cmocka_unit_test(test_structured_reply_sets_df),
		cmocka_unit_test(test_readonly_flags),
		cmocka_unit_test(test_meta_list),
		cmocka_unit_test(test_meta_set),
		cmocka_unit_test(test_request_checks),
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_reply_headers),
		cmocka_unit_test(test_read_runs),
		cmocka_unit_test(test_block_status_descriptors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
