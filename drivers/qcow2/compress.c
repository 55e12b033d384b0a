// SPDX-License-Identifier: MIT
/*
 * Compressed clusters: raw deflate with a 4 KiB window (compression type 0)
 * and zstd frames (type 1), with QEMU's rules for what a valid compressed
 * cluster is (block/qcow2-threads.c).
 *
 * The size of compressed data is only known to the sector, so decoding
 * stops as soon as one cluster has been produced and the bytes after it
 * are ignored.  Contexts are made once per codec and reset per cluster, so
 * the I/O path does not allocate.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

#include "checked.h"
#include "qcow2/format.h"

/* QEMU's deflate parameters; the same ones reproduce its output exactly. */
#define DEFLATE_WINDOW_BITS (-12) /* negative: raw deflate, no zlib header */
#define DEFLATE_MEM_LEVEL 9

/*
 * A zstd frame names its own window size and the decoder allocates it.  A
 * cluster is at most 2 MiB, so no honest frame needs more than that; the
 * limit keeps a hostile frame from costing the default 128 MiB.
 */
#define ZSTD_WINDOW_LOG_MAX 23

struct qcow2_codec {
	unsigned type;
	bool inflate_ready;
	bool deflate_ready;
	z_stream inf;
	z_stream def;
	ZSTD_DCtx *dctx;
	ZSTD_CCtx *cctx;
};

static int codec_init_deflate(struct qcow2_codec *c)
{
	if (inflateInit2(&c->inf, DEFLATE_WINDOW_BITS) != Z_OK)
		return -ENOMEM;
	c->inflate_ready = true;
	if (deflateInit2(&c->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, DEFLATE_WINDOW_BITS,
			 DEFLATE_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	c->deflate_ready = true;
	return 0;
}

static int codec_init_zstd(struct qcow2_codec *c)
{
	c->dctx = ZSTD_createDCtx();
	c->cctx = ZSTD_createCCtx();
	if (!c->dctx || !c->cctx)
		return -ENOMEM;
	if (ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
		return -EIO;
	return 0;
}

int qcow2_codec_new(unsigned compression_type, struct qcow2_codec **out)
{
	struct qcow2_codec *c;
	int ret;

	if (compression_type > QCOW2_COMPRESSION_ZSTD)
		return -ENOTSUP;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->type = compression_type;
	if (compression_type == QCOW2_COMPRESSION_DEFLATE)
		ret = codec_init_deflate(c);
	else
		ret = codec_init_zstd(c);
	if (ret) {
		qcow2_codec_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void qcow2_codec_free(struct qcow2_codec *c)
{
	if (!c)
		return;
	if (c->inflate_ready)
		inflateEnd(&c->inf);
	if (c->deflate_ready)
		deflateEnd(&c->def);
	ZSTD_freeDCtx(c->dctx);
	ZSTD_freeCCtx(c->cctx);
	free(c);
}

/*
 * Z_BUF_ERROR with a full output is success: the input is only known to
 * the sector, so the stream may not have reached its end marker yet.
 */
static int inflate_cluster(struct qcow2_codec *c, void *dst, size_t dst_len, const void *src,
			   size_t src_len)
{
	int ret;

	if (dst_len > UINT_MAX || inflateReset(&c->inf) != Z_OK)
		return -EIO;
	c->inf.next_in = (Bytef *)src;
	c->inf.avail_in = (uInt)MIN(src_len, (size_t)UINT_MAX);
	c->inf.next_out = dst;
	c->inf.avail_out = (uInt)dst_len;
	ret = inflate(&c->inf, Z_FINISH);
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && c->inf.avail_out == 0)
		return 0;
	return -EIO;
}

/*
 * Several frames may make up the cluster, so decode until it is full.  The
 * frame that fills it must end there: data that would overflow the cluster
 * is corrupt.  A call that neither consumes nor produces means the input
 * ran out (or zero padding follows a frame) before the cluster was full.
 */
static int zstd_decompress_cluster(struct qcow2_codec *c, void *dst, size_t dst_len,
				   const void *src, size_t src_len)
{
	ZSTD_outBuffer out = { dst, dst_len, 0 };
	ZSTD_inBuffer in = { src, src_len, 0 };
	size_t r = 0;

	if (ZSTD_isError(ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only)))
		return -EIO;
	while (out.pos < out.size) {
		size_t in_before = in.pos;
		size_t out_before = out.pos;

		r = ZSTD_decompressStream(c->dctx, &out, &in);
		if (ZSTD_isError(r))
			return -EIO;
		if (in.pos == in_before && out.pos == out_before)
			return -EIO;
	}
	return r == 0 ? 0 : -EIO;
}

int qcow2_decompress(struct qcow2_codec *c, void *dst, size_t dst_len, const void *src,
		     size_t src_len)
{
	if (c->type == QCOW2_COMPRESSION_DEFLATE)
		return inflate_cluster(c, dst, dst_len, src, src_len);
	return zstd_decompress_cluster(c, dst, dst_len, src, src_len);
}

static int deflate_cluster(struct qcow2_codec *c, void *dst, size_t cap, const void *src,
			   size_t src_len, size_t *out_len)
{
	int ret;

	if (src_len > UINT_MAX)
		return -EINVAL;
	if (deflateReset(&c->def) != Z_OK)
		return -EIO;
	cap = MIN(cap, (size_t)UINT_MAX);
	c->def.next_in = (Bytef *)src;
	c->def.avail_in = (uInt)src_len;
	c->def.next_out = dst;
	c->def.avail_out = (uInt)cap;
	ret = deflate(&c->def, Z_FINISH);
	if (ret == Z_STREAM_END) {
		*out_len = cap - c->def.avail_out;
		return 0;
	}
	/* Z_OK / Z_BUF_ERROR: the output did not fit */
	return ret == Z_OK || ret == Z_BUF_ERROR ? -ENOSPC : -EIO;
}

/*
 * One ZSTD_e_end call either finishes the frame or reports how much it
 * still has to write, which only happens when the output is too small.
 */
static int zstd_compress_cluster(struct qcow2_codec *c, void *dst, size_t cap, const void *src,
				 size_t src_len, size_t *out_len)
{
	ZSTD_outBuffer out = { dst, cap, 0 };
	ZSTD_inBuffer in = { src, src_len, 0 };
	size_t r;

	if (ZSTD_isError(ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only)))
		return -EIO;
	r = ZSTD_compressStream2(c->cctx, &out, &in, ZSTD_e_end);
	if (ZSTD_isError(r))
		return -EIO;
	if (r != 0)
		return -ENOSPC;
	*out_len = out.pos;
	return 0;
}

int qcow2_compress(struct qcow2_codec *c, void *dst, size_t dst_cap, const void *src,
		   size_t src_len, size_t *out_len)
{
	/* at least one byte smaller than the input, as QEMU requires */
	size_t cap = MIN(dst_cap, src_len ? src_len - 1 : 0);

	if (cap == 0)
		return -ENOSPC;
	if (c->type == QCOW2_COMPRESSION_DEFLATE)
		return deflate_cluster(c, dst, cap, src, src_len, out_len);
	return zstd_compress_cluster(c, dst, cap, src, src_len, out_len);
}
