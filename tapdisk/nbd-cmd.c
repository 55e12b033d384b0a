// SPDX-License-Identifier: MIT
/*
 * NBD transmission phase, socket-free: request headers in, reply headers
 * and chunk payloads out.  Nothing here allocates; the connection code
 * owns every buffer.
 */
#include <errno.h>
#include <string.h>

#include "checked.h"
#include "tapdisk/nbd-proto.h"

int nbdp_request_decode(const uint8_t hdr[NBDP_REQUEST_BYTES], struct nbdp_request *r)
{
	if (get_be32(hdr) != NBDP_REQUEST_MAGIC)
		return -EPROTO;
	r->flags = get_be16(hdr + 4);
	r->type = get_be16(hdr + 6);
	r->cookie = get_be64(hdr + 8);
	r->offset = get_be64(hdr + 16);
	r->len = get_be32(hdr + 24);
	return 0;
}

/* The command flags each command accepts (FUA is valid on every one). */
static uint16_t allowed_flags(const struct nbdp_session *s, uint16_t type)
{
	switch (type) {
	case NBDP_CMD_READ:
		return NBDP_CMD_FLAG_FUA | (s->structured ? NBDP_CMD_FLAG_DF : 0);
	case NBDP_CMD_WRITE_ZEROES:
		return NBDP_CMD_FLAG_FUA | NBDP_CMD_FLAG_NO_HOLE | NBDP_CMD_FLAG_FAST_ZERO;
	case NBDP_CMD_BLOCK_STATUS:
		return NBDP_CMD_FLAG_FUA | NBDP_CMD_FLAG_REQ_ONE;
	default:
		return NBDP_CMD_FLAG_FUA;
	}
}

static bool writes(uint16_t type)
{
	return type == NBDP_CMD_WRITE || type == NBDP_CMD_TRIM || type == NBDP_CMD_WRITE_ZEROES;
}

/* Is the command itself usable on this export and session? */
static uint32_t check_supported(const struct nbdp_session *s, const struct nbdp_export *e,
				const struct nbdp_request *r)
{
	switch (r->type) {
	case NBDP_CMD_READ:
	case NBDP_CMD_WRITE:
	case NBDP_CMD_CACHE:
		return 0;
	case NBDP_CMD_FLUSH:
		return r->offset || r->len ? NBDP_EINVAL : 0;
	case NBDP_CMD_TRIM:
		return e->can_trim ? 0 : NBDP_EINVAL;
	case NBDP_CMD_WRITE_ZEROES:
		if (!e->can_zero)
			return NBDP_EINVAL;
		if ((r->flags & NBDP_CMD_FLAG_FAST_ZERO) && !e->can_fast_zero)
			return NBDP_EINVAL;
		return 0;
	case NBDP_CMD_BLOCK_STATUS:
		return nbdp_meta_count(s) && r->len ? 0 : NBDP_EINVAL;
	default:
		return NBDP_EINVAL;
	}
}

uint32_t nbdp_request_check(const struct nbdp_session *s, const struct nbdp_export *e,
			    const struct nbdp_request *r, bool *disconnect)
{
	uint32_t err;

	*disconnect = r->type == NBDP_CMD_WRITE && r->len > e->max_block;
	if (*disconnect)
		return NBDP_EOVERFLOW;
	if (r->flags & ~allowed_flags(s, r->type))
		return NBDP_EINVAL;
	if (e->readonly && writes(r->type))
		return NBDP_EPERM; /* before "not supported": the protocol asks for EPERM */
	err = check_supported(s, e, r);
	if (err)
		return err;
	if (r->type == NBDP_CMD_READ && r->len > e->max_block)
		return NBDP_EOVERFLOW;
	if (r->type != NBDP_CMD_FLUSH && !range_within(r->offset, r->len, e->size_bytes))
		return r->type == NBDP_CMD_WRITE || r->type == NBDP_CMD_WRITE_ZEROES ? NBDP_ENOSPC
										     : NBDP_EINVAL;
	return 0;
}

uint32_t nbdp_errno(int err)
{
	switch (-err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBDP_EPERM;
	case ENOMEM:
		return NBDP_ENOMEM;
	case EINVAL:
		return NBDP_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBDP_ENOSPC;
	case EOVERFLOW:
		return NBDP_EOVERFLOW;
	case EOPNOTSUPP:
		return NBDP_ENOTSUP;
	case ESHUTDOWN:
		return NBDP_ESHUTDOWN;
	default:
		return NBDP_EIO;
	}
}

void nbdp_simple_reply(uint8_t out[NBDP_SIMPLE_REPLY_BYTES], uint32_t error, uint64_t cookie)
{
	put_be32(out, NBDP_SIMPLE_REPLY_MAGIC);
	put_be32(out + 4, error);
	put_be64(out + 8, cookie);
}

void nbdp_chunk_hdr(uint8_t out[NBDP_CHUNK_HDR_BYTES], uint16_t flags, uint16_t type,
		    uint64_t cookie, uint32_t payload_len)
{
	put_be32(out, NBDP_STRUCTURED_REPLY_MAGIC);
	put_be16(out + 4, flags);
	put_be16(out + 6, type);
	put_be64(out + 8, cookie);
	put_be32(out + 16, payload_len);
}

size_t nbdp_error_chunk(uint8_t *out, size_t cap, uint64_t cookie, uint32_t error, const char *msg)
{
	size_t fixed = NBDP_CHUNK_HDR_BYTES + 6, mlen = msg ? strlen(msg) : 0;

	if (cap < fixed)
		return 0;
	mlen = MIN(mlen, cap - fixed);
	nbdp_chunk_hdr(out, NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_ERROR, cookie,
		       (uint32_t)(6 + mlen));
	put_be32(out + NBDP_CHUNK_HDR_BYTES, error);
	put_be16(out + NBDP_CHUNK_HDR_BYTES + 4, (uint16_t)mlen);
	if (mlen)
		memcpy(out + fixed, msg, mlen);
	return fixed + mlen;
}

/* ---- sparse reads ------------------------------------------------------- */

/* All zeros?  The first 16 bytes, then each byte against the one 16 before. */
static bool is_zero(const uint8_t *p, size_t n)
{
	size_t i, head = MIN(n, (size_t)16);

	for (i = 0; i < head; i++) {
		if (p[i])
			return false;
	}
	return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

unsigned nbdp_read_runs(const uint8_t *buf, uint64_t disk_offset, uint32_t len, uint32_t grain,
			struct nbdp_run *runs, unsigned max)
{
	uint32_t pos = 0, piece;
	unsigned nr = 0;
	bool zero;

	if (max == 0)
		return 0;
	while (pos < len) {
		piece = grain - (uint32_t)((disk_offset + pos) & (grain - 1));
		piece = MIN(piece, len - pos);
		zero = is_zero(buf + pos, piece);
		if (nr && runs[nr - 1].zero == zero) {
			runs[nr - 1].len += piece;
		} else if (nr == max) {
			/* out of runs: the rest goes as data, whatever it holds */
			runs[nr - 1].zero = false;
			runs[nr - 1].len = len - runs[nr - 1].off;
			return nr;
		} else {
			runs[nr++] = (struct nbdp_run){ .off = pos, .len = piece, .zero = zero };
		}
		pos += piece;
	}
	return nr;
}

/* ---- block status descriptors ------------------------------------------- */

void nbdp_bs_init(struct nbdp_bs *bs, uint8_t *desc, unsigned max)
{
	*bs = (struct nbdp_bs){ .desc = desc, .max = max };
}

bool nbdp_bs_add(struct nbdp_bs *bs, uint32_t len, uint32_t flags)
{
	uint8_t *last = bs->nr ? bs->desc + 8 * (bs->nr - 1) : NULL;

	if (len == 0)
		return true;
	if (last && bs->last_flags == flags && get_be32(last) <= UINT32_MAX - len) {
		put_be32(last, get_be32(last) + len);
	} else {
		if (bs->nr == bs->max)
			return false;
		put_be32(bs->desc + 8 * bs->nr, len);
		put_be32(bs->desc + 8 * bs->nr + 4, flags);
		bs->nr++;
		bs->last_flags = flags;
	}
	bs->covered += len;
	return true;
}
