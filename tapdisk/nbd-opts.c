// SPDX-License-Identifier: MIT
/*
 * NBD option haggling (fixed newstyle), socket-free: the connection code
 * reads one option, hands it here, and sends what lands in the reply
 * buffer.  Every option but EXPORT_NAME gets replies that say what went
 * wrong in words a user can read; EXPORT_NAME cannot carry an error, so a
 * name we do not serve is a hard disconnect, as the protocol says.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/nbd-proto.h"

void nbdp_buf_free(struct nbdp_buf *b)
{
	free(b->data);
	*b = (struct nbdp_buf){ 0 };
}

int nbdp_buf_put(struct nbdp_buf *b, const void *data, size_t len)
{
	if (len > b->cap - b->len) {
		size_t cap = MAX(b->cap * 2, b->len + len);
		uint8_t *p = realloc(b->data, MAX(cap, (size_t)256));

		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = MAX(cap, (size_t)256);
	}
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

uint16_t nbdp_tx_flags(const struct nbdp_export *e, bool structured)
{
	uint16_t f = NBDP_FLAG_HAS_FLAGS | NBDP_FLAG_SEND_FLUSH | NBDP_FLAG_CAN_MULTI_CONN |
		     NBDP_FLAG_SEND_CACHE;

	if (structured)
		f |= NBDP_FLAG_SEND_DF;
	if (e->readonly)
		return f | NBDP_FLAG_READ_ONLY;
	f |= NBDP_FLAG_SEND_FUA;
	if (e->can_trim)
		f |= NBDP_FLAG_SEND_TRIM;
	if (e->can_zero)
		f |= NBDP_FLAG_SEND_WRITE_ZEROES;
	if (e->can_zero && e->can_fast_zero)
		f |= NBDP_FLAG_SEND_FAST_ZERO;
	return f;
}

void nbdp_greeting(uint8_t out[NBDP_GREETING_BYTES])
{
	put_be64(out, NBDP_MAGIC);
	put_be64(out + 8, NBDP_OPTS_MAGIC);
	put_be16(out + 16, NBDP_FLAG_FIXED_NEWSTYLE | NBDP_FLAG_NO_ZEROES);
}

int nbdp_client_flags(struct nbdp_session *s, uint32_t flags)
{
	/*
	 * A client without C_FIXED_NEWSTYLE is served as a fixed one: the
	 * protocol allows it, and such a client only ever sends EXPORT_NAME.
	 */
	if (flags & ~(NBDP_FLAG_C_FIXED_NEWSTYLE | NBDP_FLAG_C_NO_ZEROES))
		return -EPROTO;
	*s = (struct nbdp_session){ .no_zeroes = (flags & NBDP_FLAG_C_NO_ZEROES) != 0 };
	return 0;
}

/* ---- replies ----------------------------------------------------------- */

int nbdp_rep_hdr(struct nbdp_buf *out, uint32_t opt, uint32_t type, uint32_t len)
{
	uint8_t h[NBDP_REP_HDR_BYTES];

	put_be64(h, NBDP_REP_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, type);
	put_be32(h + 16, len);
	return nbdp_buf_put(out, h, sizeof(h));
}

static int rep_ack(struct nbdp_buf *out, uint32_t opt)
{
	return nbdp_rep_hdr(out, opt, NBDP_REP_ACK, 0);
}

int nbdp_rep_err(struct nbdp_buf *out, uint32_t opt, uint32_t type, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n, err;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	n = MIN(n, (int)sizeof(msg) - 1);
	err = nbdp_rep_hdr(out, opt, type, (uint32_t)n);
	return err ? err : nbdp_buf_put(out, msg, (size_t)n);
}

int nbdp_opt_too_big(uint32_t opt, struct nbdp_buf *out)
{
	return nbdp_rep_err(out, opt, NBDP_REP_ERR_TOO_BIG, "option data longer than %u bytes",
			    NBDP_OPT_MAX_BYTES);
}

bool nbdp_name_matches(const struct nbdp_export *e, const uint8_t *name, uint32_t len)
{
	if (len == 0)
		return true; /* the default export */
	return strlen(e->name) == len && memcmp(e->name, name, len) == 0;
}

/* ---- NBD_OPT_LIST ------------------------------------------------------ */

static int opt_list(const struct nbdp_export *e, uint32_t len, struct nbdp_buf *out)
{
	size_t nlen = strlen(e->name), dlen = e->description ? strlen(e->description) : 0;
	uint8_t be[4];
	int err;

	if (len)
		return nbdp_rep_err(out, NBDP_OPT_LIST, NBDP_REP_ERR_INVALID,
				    "NBD_OPT_LIST takes no data");
	put_be32(be, (uint32_t)nlen);
	err = nbdp_rep_hdr(out, NBDP_OPT_LIST, NBDP_REP_SERVER, (uint32_t)(4 + nlen + dlen));
	if (!err)
		err = nbdp_buf_put(out, be, 4);
	if (!err)
		err = nbdp_buf_put(out, e->name, nlen);
	if (!err)
		err = nbdp_buf_put(out, e->description, dlen);
	return err ? err : rep_ack(out, NBDP_OPT_LIST);
}

/* ---- NBD_OPT_INFO / NBD_OPT_GO ----------------------------------------- */

static int info_export(const struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		       struct nbdp_buf *out)
{
	uint8_t d[12];

	put_be16(d, NBDP_INFO_EXPORT);
	put_be64(d + 2, e->size_bytes);
	put_be16(d + 10, nbdp_tx_flags(e, s->structured));
	return nbdp_rep_hdr(out, opt, NBDP_REP_INFO, sizeof(d)) ?: nbdp_buf_put(out, d, sizeof(d));
}

static int info_string(uint32_t opt, uint16_t type, const char *str, struct nbdp_buf *out)
{
	size_t len = strlen(str);
	uint8_t d[2];

	put_be16(d, type);
	return nbdp_rep_hdr(out, opt, NBDP_REP_INFO, (uint32_t)(2 + len)) ?:
		       nbdp_buf_put(out, d, 2) ?: nbdp_buf_put(out, str, len);
}

/*
 * Block sizes are sent whether or not the client asked (as QEMU does).  The
 * server serves any byte range (sub-block writes are read-modify-written),
 * so the minimum is 1 either way.
 */
static int info_block_size(const struct nbdp_export *e, uint32_t opt, struct nbdp_buf *out)
{
	uint8_t d[14];

	put_be16(d, NBDP_INFO_BLOCK_SIZE);
	put_be32(d + 2, e->min_block);
	put_be32(d + 6, e->pref_block);
	put_be32(d + 10, e->max_block);
	return nbdp_rep_hdr(out, opt, NBDP_REP_INFO, sizeof(d)) ?: nbdp_buf_put(out, d, sizeof(d));
}

static int opt_info_go(const struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		       const uint8_t *data, uint32_t len, struct nbdp_buf *out, bool *go)
{
	bool want_name = false, want_desc = false;
	uint32_t nlen, nreq, i;
	int err;

	*go = false;
	if (len < 6 || (nlen = get_be32(data)) > len - 6 || nlen > NBDP_STRING_MAX)
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_INVALID, "malformed export name");
	nreq = get_be16(data + 4 + nlen);
	if ((uint64_t)len != 6ull + nlen + 2ull * nreq)
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_INVALID,
				    "option length %u does not match %u information requests", len,
				    nreq);
	if (!nbdp_name_matches(e, data + 4, nlen))
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_UNKNOWN, "export '%.*s' not found",
				    (int)MIN(nlen, 256u), (const char *)data + 4);
	for (i = 0; i < nreq; i++) {
		uint16_t t = get_be16(data + 6 + nlen + 2 * i);

		want_name |= t == NBDP_INFO_NAME;
		want_desc |= t == NBDP_INFO_DESCRIPTION;
	}
	err = info_export(s, e, opt, out);
	if (!err && want_name)
		err = info_string(opt, NBDP_INFO_NAME, e->name, out);
	if (!err && want_desc && e->description)
		err = info_string(opt, NBDP_INFO_DESCRIPTION, e->description, out);
	if (!err)
		err = info_block_size(e, opt, out);
	if (!err)
		err = rep_ack(out, opt);
	*go = !err && opt == NBDP_OPT_GO;
	return err;
}

/* ---- NBD_OPT_EXPORT_NAME ----------------------------------------------- */

static int opt_export_name(const struct nbdp_session *s, const struct nbdp_export *e,
			   const uint8_t *data, uint32_t len, struct nbdp_buf *out, bool *ok)
{
	static const uint8_t zeroes[NBDP_EXPORT_NAME_ZEROES];
	uint8_t d[10];

	*ok = len <= NBDP_STRING_MAX && nbdp_name_matches(e, data, len);
	if (!*ok)
		return 0;
	put_be64(d, e->size_bytes);
	put_be16(d + 8, nbdp_tx_flags(e, s->structured));
	return nbdp_buf_put(out, d, sizeof(d))
		       ?: nbdp_buf_put(out, zeroes, s->no_zeroes ? 0 : sizeof(zeroes));
}

/* ---- dispatch ---------------------------------------------------------- */

int nbdp_opt_handle(struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		    const uint8_t *data, uint32_t len, struct nbdp_buf *out,
		    enum nbdp_opt_next *next)
{
	bool flag = false;
	int err;

	*next = NBDP_NEXT_OPTION;
	switch (opt) {
	case NBDP_OPT_EXPORT_NAME:
		err = opt_export_name(s, e, data, len, out, &flag);
		*next = flag ? NBDP_NEXT_TRANSMIT : NBDP_NEXT_CLOSE;
		return err;
	case NBDP_OPT_ABORT:
		*next = NBDP_NEXT_CLOSE;
		return rep_ack(out, opt);
	case NBDP_OPT_LIST:
		return opt_list(e, len, out);
	case NBDP_OPT_INFO:
	case NBDP_OPT_GO:
		err = opt_info_go(s, e, opt, data, len, out, &flag);
		if (flag)
			*next = NBDP_NEXT_TRANSMIT;
		return err;
	case NBDP_OPT_STRUCTURED_REPLY:
		if (len)
			return nbdp_rep_err(out, opt, NBDP_REP_ERR_INVALID,
					    "NBD_OPT_STRUCTURED_REPLY takes no data");
		s->structured = true;
		return rep_ack(out, opt);
	case NBDP_OPT_LIST_META_CONTEXT:
	case NBDP_OPT_SET_META_CONTEXT:
		return nbdp_meta_reply(s, e, opt, data, len, out);
	case NBDP_OPT_STARTTLS:
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_UNSUP,
				    "TLS is not supported by this server");
	default:
		return nbdp_rep_err(out, opt, NBDP_REP_ERR_UNSUP, "option %u is not supported",
				    opt);
	}
}
