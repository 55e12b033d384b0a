/* SPDX-License-Identifier: MIT */
/*
 * The commands of tap-img io: read, write, discard, flush.  Their options,
 * defaults and output follow qemu-io (write's default pattern is 0xcd, a
 * failed pattern check prints "Pattern verification failed at offset N,
 * LEN bytes" and still reports the read).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "io.h"

#define IO_MAX_LEN (1ull << 30) /* one buffer per command: keep it sane */
#define IO_BUF_ALIGN 4096
#define IO_WRITE_PATTERN 0xcd

/* A parsed "OFF LEN" pair plus the shared -P/-q flags. */
struct io_range {
	uint64_t offset;
	uint64_t len;
	int pattern; /* -1: none given */
	bool quiet;
};

static int io_parse_num(const char *what, const char *s, uint64_t *out)
{
	if (parse_u64(s, true, out)) {
		printf("non-numeric %s argument -- %s\n", what, s);
		return -1;
	}
	return 0;
}

static int io_parse_pattern(const char *s, int *out)
{
	uint64_t v;

	if (parse_u64(s, false, &v) || v > 0xff) {
		printf("invalid pattern -- %s\n", s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* The OFF LEN operands left after getopt, as qemu-io checks them. */
static int io_parse_range(int argc, char **argv, struct io_range *r)
{
	if (argc - optind != 2) {
		printf("%s: expected OFF LEN\n", argv[0]);
		return -1;
	}
	if (io_parse_num("offset", argv[optind], &r->offset) ||
	    io_parse_num("length", argv[optind + 1], &r->len))
		return -1;
	if (r->len > IO_MAX_LEN) {
		printf("length %" PRIu64 " is too large (at most %llu)\n", r->len, IO_MAX_LEN);
		return -1;
	}
	return 0;
}

static int io_failed(const char *what, int err)
{
	printf("%s failed: %s\n", what, err_str(err));
	return -1;
}

/* qemu-io's dump_buffer(): 16 bytes per line, hex, then letters and digits. */
static void io_dump(const uint8_t *buf, uint64_t offset, uint64_t len)
{
	uint64_t i, j;

	for (i = 0; i < len; i += 16) {
		printf("%08" PRIx64 ":  ", offset + i);
		for (j = i; j < i + 16 && j < len; j++)
			printf("%02x ", buf[j]);
		putchar(' ');
		for (j = i; j < i + 16 && j < len; j++)
			putchar(isalnum(buf[j]) ? buf[j] : '.');
		putchar('\n');
	}
}

/* One read or write of exactly the caller's range, with @flags (DRV_REQ_*). */
static int io_rw_exact(struct io_state *st, enum drv_op op, uint64_t offset, void *buf,
		       uint64_t len, unsigned flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct drv_req req = {
		.op = op,
		.flags = flags,
		.offset = offset,
		.len = len,
		.iov = &iov,
		.iovcnt = 1,
	};

	return drv_sync_req(st->sync, &req);
}

/*
 * Read or write any byte range, as qemu-io allows: drivers take whole
 * blocks only, so a misaligned range is widened to blocks and, for a write,
 * read-modify-written.  That is safe here because io runs one request at a
 * time on an image nobody else writes.
 */
static int io_transfer(struct io_state *st, enum drv_op op, uint64_t offset, void *buf,
		       uint64_t len, unsigned flags)
{
	uint64_t bb = st->img->block_bytes, lo = ALIGN_DOWN(offset, bb), hi;
	uint8_t *tmp;
	int err;

	if (is_aligned_u64(offset, bb) && is_aligned_u64(len, bb))
		return io_rw_exact(st, op, offset, buf, len, flags);
	if (ck_add(offset, len, &hi) || ck_align_up_u64(hi, bb, &hi))
		return -EINVAL;
	tmp = buf_alloc(hi - lo, IO_BUF_ALIGN);
	if (!tmp)
		return -ENOMEM;
	memset(tmp, 0, hi - lo);
	err = io_rw_exact(st, DRV_OP_READ, lo, tmp, hi - lo, 0);
	if (!err && op == DRV_OP_READ)
		memcpy(buf, tmp + (offset - lo), len);
	if (!err && op == DRV_OP_WRITE) {
		memcpy(tmp + (offset - lo), buf, len);
		err = io_rw_exact(st, DRV_OP_WRITE, lo, tmp, hi - lo, flags);
	}
	buf_free(tmp);
	return err;
}

static int io_read(struct io_state *st, int argc, char **argv)
{
	struct io_range r = { .pattern = -1 };
	bool verbose = false;
	uint64_t t0, i;
	uint8_t *buf;
	int c, err;

	while ((c = getopt(argc, argv, "+P:vq")) != -1) {
		if (c == 'P' && io_parse_pattern(optarg, &r.pattern))
			return -1;
		if (c == '?')
			return -1;
		verbose |= c == 'v';
		r.quiet |= c == 'q';
	}
	if (io_parse_range(argc, argv, &r))
		return -1;
	buf = buf_alloc(r.len ?: 1, IO_BUF_ALIGN);
	if (!buf)
		return io_failed("read", -ENOMEM);
	memset(buf, 0, r.len); /* defined even if the kernel's writes go unseen (valgrind) */
	t0 = evloop_now_ns();
	err = io_transfer(st, DRV_OP_READ, r.offset, buf, r.len, 0);
	if (err) {
		buf_free(buf);
		return io_failed("read", err);
	}
	t0 = evloop_now_ns() - t0;
	for (i = 0; r.pattern >= 0 && i < r.len && buf[i] == r.pattern; i++)
		;
	if (r.pattern >= 0 && i < r.len) {
		printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
		       r.offset, r.len);
		err = -EINVAL;
	}
	if (verbose)
		io_dump(buf, r.offset, r.len);
	if (!st->quiet && !r.quiet)
		io_report("read", r.offset, r.len, t0);
	buf_free(buf);
	return err ? -1 : 0;
}

/*
 * write -P and write -z.  Zeroing uses the driver's write_zeroes (-u: may
 * deallocate) where the range is whole blocks, and writes zeros otherwise.
 */
static int io_write_range(struct io_state *st, const struct io_range *r, bool zeroes,
			  unsigned flags)
{
	uint64_t bb = st->img->block_bytes, t0;
	uint8_t *buf = NULL;
	int err;

	t0 = evloop_now_ns();
	if (zeroes && is_aligned_u64(r->offset, bb) && is_aligned_u64(r->len, bb)) {
		err = drv_sync_write_zeroes(st->sync, r->offset, r->len, flags);
	} else {
		buf = buf_alloc(r->len ?: 1, IO_BUF_ALIGN);
		if (!buf)
			return io_failed("write", -ENOMEM);
		memset(buf, zeroes ? 0 : r->pattern >= 0 ? r->pattern : IO_WRITE_PATTERN, r->len);
		t0 = evloop_now_ns();
		err = io_transfer(st, DRV_OP_WRITE, r->offset, buf, r->len,
				  flags & ~DRV_REQ_MAY_UNMAP);
	}
	t0 = evloop_now_ns() - t0;
	buf_free(buf);
	if (err)
		return io_failed("write", err);
	if (!st->quiet && !r->quiet)
		io_report("wrote", r->offset, r->len, t0);
	return 0;
}

static int io_write(struct io_state *st, int argc, char **argv)
{
	struct io_range r = { .pattern = -1 };
	bool zeroes = false;
	unsigned flags = 0;
	int c;

	while ((c = getopt(argc, argv, "+P:zufq")) != -1) {
		if (c == 'P' && io_parse_pattern(optarg, &r.pattern))
			return -1;
		if (c == '?')
			return -1;
		zeroes |= c == 'z';
		flags |= c == 'u' ? DRV_REQ_MAY_UNMAP : 0;
		flags |= c == 'f' ? DRV_REQ_FUA : 0;
		r.quiet |= c == 'q';
	}
	if (io_parse_range(argc, argv, &r))
		return -1;
	if (zeroes && r.pattern >= 0) {
		printf("-z and -P cannot be specified at the same time\n");
		return -1;
	}
	if (!zeroes && (flags & DRV_REQ_MAY_UNMAP)) {
		printf("-u requires -z to be specified\n");
		return -1;
	}
	return io_write_range(st, &r, zeroes, flags);
}

static int io_discard(struct io_state *st, int argc, char **argv)
{
	struct io_range r = { .pattern = -1 };
	uint64_t t0;
	int c, err;

	while ((c = getopt(argc, argv, "+q")) != -1) {
		if (c == '?')
			return -1;
		r.quiet = true;
	}
	if (io_parse_range(argc, argv, &r))
		return -1;
	t0 = evloop_now_ns();
	err = drv_sync_discard(st->sync, r.offset, r.len);
	if (err)
		return io_failed("discard", err);
	if (!st->quiet && !r.quiet)
		io_report("discard", r.offset, r.len, evloop_now_ns() - t0);
	return 0;
}

static int io_flush(struct io_state *st, int argc, char **argv)
{
	int err;

	if (argc != 1) {
		printf("flush: takes no arguments\n");
		return -1;
	}
	err = drv_sync_flush(st->sync);
	return err ? io_failed("flush", err) : 0;
}

/* qemu-io's sleep: hold the image open (tests use it to keep its locks taken). */
static int io_sleep(struct io_state *st, int argc, char **argv)
{
	struct timespec ts;
	uint64_t ms;

	(void)st;
	if (argc != 2 || parse_u64(argv[1], false, &ms) || ms > UINT32_MAX) {
		printf("sleep: expected MILLISECONDS\n");
		return -1;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

const struct io_cmd io_cmds[] = {
	{
		.name = "read",
		.fn = io_read,
		.args = "[-P PATTERN] [-v] [-q] OFF LEN",
		.help = "read LEN bytes at OFF; -P checks every byte is PATTERN, -v dumps them",
	},
	{
		.name = "write",
		.fn = io_write,
		.args = "[-P PATTERN | -z [-u]] [-f] [-q] OFF LEN",
		.help = "write PATTERN (default 0xcd) or, with -z, zeroes (-u: may unmap); "
			"-f: FUA",
	},
	{
		.name = "discard",
		.fn = io_discard,
		.args = "[-q] OFF LEN",
		.help = "discard (deallocate) LEN bytes at OFF",
	},
	{
		.name = "flush",
		.fn = io_flush,
		.args = "",
		.help = "make every completed write durable",
	},
	{
		.name = "sleep",
		.fn = io_sleep,
		.args = "MS",
		.help = "wait MS milliseconds, holding the image open",
	},
	{ .name = NULL },
};
