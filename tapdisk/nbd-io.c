// SPDX-License-Identifier: MIT
/*
 * Running one NBD request against the vbd, and building its reply.
 *
 * The vbd takes whole blocks; the export serves any byte range:
 *   READ          the enclosing blocks are read into the arena and the
 *                 reply points into the middle of them (no copy);
 *   WRITE         the payload is received into the middle of a buffer of
 *                 the enclosing blocks; whole-block writes go straight to
 *                 the vbd, others through the read-modify-write helper;
 *   WRITE_ZEROES  whole blocks to the vbd, partial ones read-modify-written;
 *   TRIM          a hint: only the whole blocks inside the range are
 *                 discarded;
 *   CACHE         walks the range's block status, which pulls the image's
 *                 mapping tables into memory: the data itself is never
 *                 cached (O_DIRECT), but the next reads skip the lookups.
 *
 * Sparse reads: with structured replies, a read's data is split at 4 KiB
 * boundaries into runs of zeros, sent as OFFSET_HOLE chunks, and runs of
 * data, sent as OFFSET_DATA chunks (unless the client asked for one chunk
 * with NBD_CMD_FLAG_DF).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "checked.h"
#include "errors.h"
#include "tapdisk/nbd-internal.h"

static const char *cmd_name(uint16_t type)
{
	static const char *const names[] = {
		[NBDP_CMD_READ] = "read",
		[NBDP_CMD_WRITE] = "write",
		[NBDP_CMD_DISC] = "disconnect",
		[NBDP_CMD_FLUSH] = "flush",
		[NBDP_CMD_TRIM] = "trim",
		[NBDP_CMD_CACHE] = "cache",
		[NBDP_CMD_WRITE_ZEROES] = "write_zeroes",
		[NBDP_CMD_BLOCK_STATUS] = "block_status",
	};

	return type < ARRAY_SIZE(names) && names[type] ? names[type] : "unknown command";
}

/* ---- replies ---------------------------------------------------------------- */

/* The data is no longer needed once the reply carries none of it. */
static void release_buf(struct nbds_slot *s)
{
	if (s->has_span)
		nbds_arena_put(&s->c->arena, &s->span);
	s->has_span = false;
}

void nbds_reply_ok(struct nbds_slot *s)
{
	release_buf(s);
	nbdp_simple_reply(s->hdr[0], 0, s->r.cookie);
	s->iov[0] = (struct iovec){ .iov_base = s->hdr[0], .iov_len = NBDP_SIMPLE_REPLY_BYTES };
	s->iovcnt = 1;
	nbds_conn_queue_reply(s);
}

void nbds_reply_error(struct nbds_slot *s, uint32_t error, const char *what)
{
	uint8_t *h = s->hdr[0];
	char msg[160];
	size_t n;

	release_buf(s);
	if (!s->c->sess.structured) {
		nbdp_simple_reply(h, error, s->r.cookie);
		n = NBDP_SIMPLE_REPLY_BYTES;
	} else {
		snprintf(msg, sizeof(msg), "%s at offset %llu length %u: %s%s%s",
			 cmd_name(s->r.type), (unsigned long long)s->r.offset, s->r.len,
			 err_str(-(int)error), what ? ": " : "", what ? what : "");
		n = nbdp_error_chunk(h, sizeof(s->hdr), s->r.cookie, error, msg);
	}
	s->iov[0] = (struct iovec){ .iov_base = h, .iov_len = n };
	s->iovcnt = 1;
	nbds_conn_queue_reply(s);
}

/* A structured chunk into header storage @h (with @extra bytes after it). */
static void chunk(struct nbds_slot *s, uint8_t *h, uint16_t flags, uint16_t type, uint32_t payload,
		  size_t hdr_bytes)
{
	nbdp_chunk_hdr(h, flags, type, s->r.cookie, payload);
	s->iov[s->iovcnt++] = (struct iovec){ .iov_base = h, .iov_len = hdr_bytes };
}

static void reply_read_sparse(struct nbds_slot *s, uint8_t *data)
{
	struct nbdp_run runs[NBDS_RUNS];
	unsigned nr, i;

	nr = nbdp_read_runs(data, s->r.offset, s->r.len, NBDS_HOLE_GRAIN, runs, NBDS_RUNS);
	for (i = 0; i < nr; i++) {
		uint16_t flags = i + 1 == nr ? NBDP_REPLY_FLAG_DONE : 0;
		uint8_t *h = s->hdr[i];

		put_be64(h + NBDP_CHUNK_HDR_BYTES, s->r.offset + runs[i].off);
		if (runs[i].zero) {
			put_be32(h + NBDP_CHUNK_HDR_BYTES + 8, runs[i].len);
			chunk(s, h, flags, NBDP_REPLY_TYPE_OFFSET_HOLE, 12,
			      NBDP_CHUNK_HDR_BYTES + 12);
		} else {
			chunk(s, h, flags, NBDP_REPLY_TYPE_OFFSET_DATA, 8 + runs[i].len,
			      NBDP_CHUNK_HDR_BYTES + 8);
			s->iov[s->iovcnt++] = (struct iovec){ .iov_base = data + runs[i].off,
							      .iov_len = runs[i].len };
		}
	}
}

static void reply_read(struct nbds_slot *s)
{
	uint8_t *data = s->buf + (s->r.offset - s->start);

	s->iovcnt = 0;
	if (!s->c->sess.structured) {
		nbdp_simple_reply(s->hdr[0], 0, s->r.cookie);
		s->iov[s->iovcnt++] = (struct iovec){ s->hdr[0], NBDP_SIMPLE_REPLY_BYTES };
	} else if (s->r.len == 0) {
		chunk(s, s->hdr[0], NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_NONE, 0,
		      NBDP_CHUNK_HDR_BYTES);
	} else if (s->r.flags & NBDP_CMD_FLAG_DF) {
		put_be64(s->hdr[0] + NBDP_CHUNK_HDR_BYTES, s->r.offset);
		chunk(s, s->hdr[0], NBDP_REPLY_FLAG_DONE, NBDP_REPLY_TYPE_OFFSET_DATA, 8 + s->r.len,
		      NBDP_CHUNK_HDR_BYTES + 8);
	} else {
		reply_read_sparse(s, data);
		nbds_conn_queue_reply(s);
		return;
	}
	if (s->r.len)
		s->iov[s->iovcnt++] = (struct iovec){ .iov_base = data, .iov_len = s->r.len };
	nbds_conn_queue_reply(s);
}

/* ---- completions -------------------------------------------------------------- */

static void read_done(struct td_request *req, int err)
{
	struct nbds_slot *s = req->opaque;

	if (err)
		nbds_reply_error(s, nbdp_errno(err), NULL);
	else
		reply_read(s);
}

/* The reply of a request without data: its result. */
static void reply_result(struct nbds_slot *s, int err)
{
	if (err)
		nbds_reply_error(s, nbdp_errno(err), NULL);
	else
		nbds_reply_ok(s);
}

static void flush_after_done(struct td_request *req, int err)
{
	reply_result(req->opaque, err);
}

static void op_done(struct td_request *req, int err)
{
	struct nbds_slot *s = req->opaque;

	if (!err && req->op == TD_OP_DISCARD && (s->r.flags & NBDP_CMD_FLAG_FUA)) {
		/* FUA on a trim: the vbd takes FUA on writes only */
		s->req = (struct td_request){ .op = TD_OP_FLUSH,
					      .done = flush_after_done,
					      .opaque = s };
		vbd_submit(s->c->q, &s->req);
		return;
	}
	reply_result(s, err);
}

static void rmw_done(struct td_rmw *rmw, int err)
{
	reply_result(rmw->opaque, err);
}

/* ---- issuing ------------------------------------------------------------------ */

static void submit(struct nbds_slot *s, enum td_op op, unsigned flags, uint64_t off, uint64_t len,
		   uint8_t *buf, td_done_fn *done)
{
	s->req = (struct td_request){
		.op = op, .flags = flags, .offset = off, .len = len, .done = done, .opaque = s
	};
	if (buf) {
		s->io_iov = (struct iovec){ .iov_base = buf, .iov_len = len };
		s->req.iov = &s->io_iov;
		s->req.iovcnt = 1;
	}
	vbd_submit(s->c->q, &s->req);
}

static void start_rmw(struct nbds_slot *s, enum td_op op, unsigned flags, uint8_t *buf,
		      uint8_t *scratch)
{
	struct nbds_conn *c = s->c;

	s->rmw = (struct td_rmw){
		.q = c->q,
		.locks = c->srv->locks,
		.op = op,
		.flags = flags,
		.offset = s->r.offset,
		.len = s->r.len,
		.block_bytes = c->srv->block_bytes,
		.buf = buf,
		.scratch = scratch,
		.done = rmw_done,
		.opaque = s,
	};
	td_rmw_start(&s->rmw);
}

static unsigned fua(const struct nbds_slot *s)
{
	return (s->r.flags & NBDP_CMD_FLAG_FUA) ? TD_REQ_FUA : 0;
}

static bool aligned(const struct nbds_slot *s)
{
	return td_rmw_aligned(s->r.offset, s->r.len, s->c->srv->block_bytes);
}

/* The data of a WRITE is all in: write it. */
void nbds_io_payload_done(struct nbds_slot *s)
{
	uint64_t span = td_rmw_span_bytes(s->r.offset, s->r.len, s->c->srv->block_bytes);

	if (aligned(s))
		submit(s, TD_OP_WRITE, fua(s), s->r.offset, s->r.len, s->buf, op_done);
	else
		start_rmw(s, TD_OP_WRITE, fua(s), s->buf, s->buf + span);
}

static void start_trim(struct nbds_slot *s)
{
	uint64_t b = s->c->srv->block_bytes;
	uint64_t from = ALIGN_UP(s->r.offset, b), to = ALIGN_DOWN(s->r.offset + s->r.len, b);

	if (to <= from) {
		nbds_reply_ok(s); /* no whole block: nothing to drop */
		return;
	}
	submit(s, TD_OP_DISCARD, 0, from, to - from, NULL, op_done);
}

static void start_zeroes(struct nbds_slot *s)
{
	unsigned flags = fua(s);

	if (!(s->r.flags & NBDP_CMD_FLAG_NO_HOLE))
		flags |= TD_REQ_MAY_UNMAP;
	if (s->r.flags & NBDP_CMD_FLAG_FAST_ZERO)
		flags |= TD_REQ_NO_FALLBACK;
	if (aligned(s))
		submit(s, TD_OP_WRITE_ZEROES, flags, s->r.offset, s->r.len, NULL, op_done);
	else
		start_rmw(s, TD_OP_WRITE_ZEROES, flags, NULL, s->buf);
}

static void dispatch(struct nbds_slot *s)
{
	uint64_t span = td_rmw_span_bytes(s->r.offset, s->r.len, s->c->srv->block_bytes);

	if (s->r.len == 0 && s->r.type != NBDP_CMD_FLUSH) {
		if (s->r.type == NBDP_CMD_READ)
			reply_read(s);
		else
			nbds_reply_ok(s);
		return;
	}
	switch (s->r.type) {
	case NBDP_CMD_READ:
		submit(s, TD_OP_READ, 0, s->start, span, s->buf, read_done);
		break;
	case NBDP_CMD_FLUSH:
		submit(s, TD_OP_FLUSH, 0, 0, 0, NULL, op_done);
		break;
	case NBDP_CMD_TRIM:
		start_trim(s);
		break;
	case NBDP_CMD_WRITE_ZEROES:
		start_zeroes(s);
		break;
	case NBDP_CMD_CACHE:
		nbds_cache_start(s);
		break;
	case NBDP_CMD_BLOCK_STATUS:
		nbds_bs_start(s);
		break;
	}
}

/* Arena bytes the request needs. */
static size_t buf_bytes(const struct nbds_conn *c, const struct nbdp_request *r)
{
	uint32_t b = c->srv->block_bytes;
	bool partial = !td_rmw_aligned(r->offset, r->len, b);

	if (r->len == 0)
		return 0;
	switch (r->type) {
	case NBDP_CMD_READ:
		return td_rmw_span_bytes(r->offset, r->len, b);
	case NBDP_CMD_WRITE:
		return td_rmw_span_bytes(r->offset, r->len, b) + (partial ? 2 * b : 0);
	case NBDP_CMD_WRITE_ZEROES:
		return partial ? 2 * b : 0;
	case NBDP_CMD_BLOCK_STATUS:
		return nbds_bs_bytes(c, r);
	default:
		return 0;
	}
}

int nbds_io_start(struct nbds_conn *c, const struct nbdp_request *r, struct nbds_slot **out)
{
	struct nbds_slot *s = c->free_slots;
	size_t bytes = buf_bytes(c, r);

	if (!s)
		return -EAGAIN;
	s->has_span = false;
	s->buf = NULL;
	if (bytes) {
		s->buf = nbds_arena_get(&c->arena, bytes, &s->span);
		if (!s->buf)
			return -EAGAIN;
		s->has_span = true;
	}
	c->free_slots = s->next;
	c->busy++;
	s->r = *r;
	s->got = 0;
	s->start = td_rmw_start_bytes(r->offset, c->srv->block_bytes);
	*out = s;
	if (r->type != NBDP_CMD_WRITE || r->len == 0)
		dispatch(s);
	return 0;
}
