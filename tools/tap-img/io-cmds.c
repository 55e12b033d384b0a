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

#include "buf.h"
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

/* qemu-io's dump_buffer(): 16 bytes per line, hex then printable ASCII. */
static void io_dump(const uint8_t *buf, uint64_t offset, uint64_t len)
{
	uint64_t i, j;

	for (i = 0; i < len; i += 16) {
		printf("%08" PRIx64 ":  ", offset + i);
		for (j = i; j < i + 16; j++) {
			if (j < len)
				printf("%02x ", buf[j]);
			else
				printf("   ");
		}
		putchar(' ');
		for (j = i; j < i + 16 && j < len; j++)
			putchar(isprint(buf[j]) ? buf[j] : '.');
		putchar('\n');
	}
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
	t0 = evloop_now_ns();
	err = drv_sync_rw(st->sync, DRV_OP_READ, r.offset, buf, r.len);
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

/* write -z: zero the range (-u: may deallocate). */
static int io_write_zeroes(struct io_state *st, const struct io_range *r, unsigned flags)
{
	uint64_t t0 = evloop_now_ns();
	int err = drv_sync_write_zeroes(st->sync, r->offset, r->len, flags);

	if (err)
		return io_failed("write", err);
	if (!st->quiet && !r->quiet)
		io_report("wrote", r->offset, r->len, evloop_now_ns() - t0);
	return 0;
}

static int io_write_data(struct io_state *st, const struct io_range *r, unsigned flags)
{
	struct iovec iov;
	struct drv_req req = { .op = DRV_OP_WRITE, .flags = flags, .iov = &iov, .iovcnt = 1 };
	uint8_t *buf = buf_alloc(r->len ?: 1, IO_BUF_ALIGN);
	uint64_t t0;
	int err;

	if (!buf)
		return io_failed("write", -ENOMEM);
	memset(buf, r->pattern >= 0 ? r->pattern : IO_WRITE_PATTERN, r->len);
	iov = (struct iovec){ .iov_base = buf, .iov_len = r->len };
	req.offset = r->offset;
	req.len = r->len;
	t0 = evloop_now_ns();
	err = drv_sync_req(st->sync, &req);
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
	return zeroes ? io_write_zeroes(st, &r, flags) : io_write_data(st, &r, flags);
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
	{ .name = NULL },
};
