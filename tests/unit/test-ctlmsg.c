// SPDX-License-Identifier: MIT
/*
 * Control message framing over socketpairs: the header's bytes on the wire,
 * round trips with file descriptors, delivery a byte at a time, every kind
 * of bad header and body, and the request/reply helpers.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlmsg.h"

struct pair {
	int a, b;
};

static struct pair mkpair(void)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	return (struct pair){ sv[0], sv[1] };
}

static void unpair(struct pair p)
{
	close(p.a);
	close(p.b);
}

/* A header with these fields, in wire order. */
static void raw_hdr(uint8_t out[16], uint32_t magic, uint16_t version, uint16_t nr_fds,
		    uint32_t body_bytes, uint32_t reserved)
{
	uint32_t m = htole32(magic), l = htole32(body_bytes), r = htole32(reserved);
	uint16_t v = htole16(version), n = htole16(nr_fds);

	memcpy(out, &m, 4);
	memcpy(out + 4, &v, 2);
	memcpy(out + 6, &n, 2);
	memcpy(out + 8, &l, 4);
	memcpy(out + 12, &r, 4);
}

static void send_raw(int fd, uint32_t magic, uint16_t version, uint32_t reserved, const char *body)
{
	uint8_t h[16];

	raw_hdr(h, magic, version, 0, (uint32_t)strlen(body), reserved);
	assert_int_equal(write(fd, h, 16), 16);
	assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
}

static int recv_one(int fd, json_t **body, char *why)
{
	int fds[CTLMSG_MAX_FDS];
	unsigned nr = 0;

	return ctlmsg_recv(fd, body, fds, &nr, 2000, why, 160);
}

static void test_wire_bytes(void **state)
{
	struct pair p = mkpair();
	json_t *req = ctlmsg_request("info", NULL);
	uint8_t buf[256];
	ssize_t n;

	assert_int_equal(ctlmsg_send(p.a, req, NULL, 0, 1000), 0);
	n = read(p.b, buf, sizeof(buf));
	assert_true(n > 16);
	assert_memory_equal(buf, "QTCM", 4);
	assert_int_equal(buf[4] | buf[5] << 8, CTLMSG_VERSION);
	assert_int_equal(buf[6] | buf[7] << 8, 0);
	assert_int_equal(buf[8] | buf[9] << 8 | buf[10] << 16 | (uint32_t)buf[11] << 24, n - 16);
	assert_memory_equal(buf + 12, "\0\0\0\0", 4);
	buf[n] = 0;
	assert_string_equal((char *)buf + 16, "{\"cmd\":\"info\",\"args\":{}}");
	json_decref(req);
	unpair(p);
}

static void test_round_trip_fds(void **state)
{
	struct pair p = mkpair();
	json_t *req = ctlmsg_request("attach", json_pack("{s:i}", "queue", 1)), *got = NULL;
	int pipefd[2], fds[CTLMSG_MAX_FDS];
	unsigned nr = 0;
	char c = 0;

	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(ctlmsg_send(p.a, req, pipefd, 2, 1000), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	assert_int_equal(ctlmsg_recv(p.b, &got, fds, &nr, 1000, NULL, 0), 0);
	assert_int_equal(nr, 2);
	assert_true(json_equal(req, got));
	/* the fds are the pipe: what goes in one end comes out of the other */
	assert_int_equal(write(fds[1], "x", 1), 1);
	assert_int_equal(read(fds[0], &c, 1), 1);
	assert_int_equal(c, 'x');
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	close(fds[0]);
	close(fds[1]);
	json_decref(req);
	json_decref(got);
	unpair(p);
}

/* A message arriving a byte at a time, with the next one right behind it. */
static void test_byte_at_a_time(void **state)
{
	struct pair p = mkpair();
	struct ctlmsg_reader r;
	const char *body = "{\"cmd\":\"stats\"}";
	uint8_t h[16], all[64];
	size_t len = 16 + strlen(body), i;
	int fds[CTLMSG_MAX_FDS];
	unsigned nr;
	json_t *j;

	raw_hdr(h, CTLMSG_MAGIC, CTLMSG_VERSION, 0, (uint32_t)strlen(body), 0);
	memcpy(all, h, 16);
	memcpy(all + 16, body, strlen(body));
	ctlmsg_reader_init(&r);
	for (i = 0; i < len; i++) {
		assert_int_equal(ctlmsg_reader_read(&r, p.b), 0);
		assert_int_equal(write(p.a, all + i, 1), 1);
	}
	assert_int_equal(write(p.a, all, len), (ssize_t)len); /* the next message */
	assert_int_equal(ctlmsg_reader_read(&r, p.b), 1);
	assert_int_equal(ctlmsg_reader_take(&r, &j, fds, &nr), 0);
	assert_string_equal(json_string_value(json_object_get(j, "cmd")), "stats");
	json_decref(j);
	assert_int_equal(ctlmsg_reader_read(&r, p.b), 1);
	assert_int_equal(ctlmsg_reader_take(&r, &j, fds, &nr), 0);
	json_decref(j);
	close(p.a);
	assert_int_equal(ctlmsg_reader_read(&r, p.b), -ECONNRESET);
	assert_string_equal(r.error, "peer closed");
	ctlmsg_reader_reset(&r);
	close(p.b);
}

static void test_bad_headers(void **state)
{
	static const struct {
		uint32_t magic;
		uint16_t version;
		uint32_t reserved;
		const char *why;
	} cases[] = {
		{ 0x50545448u, CTLMSG_VERSION, 0, "not a qtap control message" },
		{ CTLMSG_MAGIC, 2, 0, "version 2 is not supported" },
		{ CTLMSG_MAGIC, CTLMSG_VERSION, 1, "reserved" },
	};
	char why[160];
	json_t *j;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pair p = mkpair();

		send_raw(p.a, cases[i].magic, cases[i].version, cases[i].reserved, "{}");
		assert_int_equal(recv_one(p.b, &j, why), -EPROTO);
		assert_non_null(strstr(why, cases[i].why));
		assert_null(j);
		unpair(p);
	}
}

static void test_oversized(void **state)
{
	struct pair p = mkpair();
	uint8_t h[16];
	char why[160];
	json_t *j, *big = json_object();
	char *s = malloc(CTLMSG_MAX_BODY + 1);

	/* announced too large: refused before anything is read or allocated */
	raw_hdr(h, CTLMSG_MAGIC, CTLMSG_VERSION, 0, CTLMSG_MAX_BODY + 1, 0);
	assert_int_equal(write(p.a, h, 16), 16);
	assert_int_equal(recv_one(p.b, &j, why), -EPROTO);
	assert_non_null(strstr(why, "over the"));
	raw_hdr(h, CTLMSG_MAGIC, CTLMSG_VERSION, CTLMSG_MAX_FDS + 1, 2, 0);
	assert_int_equal(write(p.a, h, 16), 16);
	assert_int_equal(recv_one(p.b, &j, why), -EPROTO);
	assert_non_null(strstr(why, "fds announced"));
	/* and never sent */
	memset(s, 'a', CTLMSG_MAX_BODY);
	s[CTLMSG_MAX_BODY] = 0;
	json_object_set_new(big, "x", json_string(s));
	assert_int_equal(ctlmsg_send(p.a, big, NULL, 0, 1000), -EMSGSIZE);
	assert_int_equal(ctlmsg_send(p.a, big, NULL, CTLMSG_MAX_FDS + 1, 1000), -EMSGSIZE);
	json_decref(big);
	free(s);
	unpair(p);
}

/* Bad bodies are refused one by one; the stream stays in step. */
static void test_bad_bodies(void **state)
{
	static const char *const bodies[] = {
		"{\"cmd\":", "[1,2]", "\"cmd\"", "", "{\"cmd\":\"a\",\"cmd\":\"b\"}",
	};
	struct pair p = mkpair();
	char why[160];
	json_t *j;

	for (unsigned i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		send_raw(p.a, CTLMSG_MAGIC, CTLMSG_VERSION, 0, bodies[i]);
	send_raw(p.a, CTLMSG_MAGIC, CTLMSG_VERSION, 0, "{\"cmd\":\"info\"}");
	for (unsigned i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		assert_int_equal(recv_one(p.b, &j, why), -EBADMSG);
		assert_null(j);
	}
	assert_int_equal(recv_one(p.b, &j, why), 0);
	assert_string_equal(json_string_value(json_object_get(j, "cmd")), "info");
	json_decref(j);
	unpair(p);
}

/* Fewer fds than announced: refused, and what came is closed. */
static void test_fd_mismatch(void **state)
{
	struct pair p = mkpair();
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	uint8_t h[16];
	struct iovec iov[2] = { { h, 16 }, { "{}", 2 } };
	struct msghdr msg = { .msg_iov = iov,
			      .msg_iovlen = 2,
			      .msg_control = cm.buf,
			      .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int pipefd[2];
	char why[160];
	json_t *j;

	assert_int_equal(pipe(pipefd), 0);
	raw_hdr(h, CTLMSG_MAGIC, CTLMSG_VERSION, 2, 2, 0);
	memset(cm.buf, 0, sizeof(cm.buf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pipefd[1], sizeof(int));
	assert_int_equal(sendmsg(p.a, &msg, 0), 18);
	close(pipefd[1]);
	assert_int_equal(recv_one(p.b, &j, why), -EBADMSG);
	assert_non_null(strstr(why, "2 fds announced, 1 received"));
	/* the received copy was closed: the pipe's write side is gone */
	{
		char x;

		assert_int_equal(read(pipefd[0], &x, 1), 0);
	}
	close(pipefd[0]);
	unpair(p);
}

static void test_truncated_and_timeout(void **state)
{
	struct pair p = mkpair();
	uint8_t h[16];
	int fds[CTLMSG_MAX_FDS];
	unsigned nr;
	char why[160];
	json_t *j;

	assert_int_equal(ctlmsg_recv(p.b, &j, fds, &nr, 50, why, sizeof(why)), -ETIMEDOUT);
	assert_string_equal(why, "timed out");
	raw_hdr(h, CTLMSG_MAGIC, CTLMSG_VERSION, 0, 10, 0);
	assert_int_equal(write(p.a, h, 16), 16);
	assert_int_equal(write(p.a, "{\"a\"", 4), 4);
	close(p.a);
	assert_int_equal(recv_one(p.b, &j, why), -ECONNRESET);
	assert_non_null(strstr(why, "middle of a message"));
	close(p.b);
}

static void test_replies(void **state)
{
	json_t *ok = ctlmsg_reply_ok(json_pack("{s:i}", "pid", 42)), *err, *res = NULL;
	const char *msg = NULL;
	char name[16];

	assert_int_equal(ctlmsg_reply_status(ok, &res, &msg), 0);
	assert_int_equal(json_integer_value(json_object_get(res, "pid")), 42);
	assert_null(msg);
	err = ctlmsg_reply_error(-ENOENT, "no such image: /x");
	assert_int_equal(ctlmsg_reply_status(err, &res, &msg), -ENOENT);
	assert_string_equal(msg, "no such image: /x");
	assert_string_equal(json_string_value(json_object_get(err, "error")), "ENOENT");
	assert_int_equal(json_integer_value(json_object_get(err, "errno")), ENOENT);
	json_decref(err);
	err = ctlmsg_reply_error(-EBUSY, NULL);
	assert_int_equal(ctlmsg_reply_status(err, NULL, &msg), -EBUSY);
	assert_string_equal(msg, strerror(EBUSY));
	json_decref(err);
	err = json_pack("{s:s}", "ok", "yes");
	assert_int_equal(ctlmsg_reply_status(err, NULL, &msg), -EPROTO);
	json_decref(err);
	assert_string_equal(ctlmsg_errno_name(-EINVAL, name, sizeof(name)), "EINVAL");
	assert_string_equal(ctlmsg_errno_name(4000, name, sizeof(name)), "E4000");
	json_decref(ok);
}

static void test_connect_errors(void **state)
{
	char path[200];
	int fd = -1;

	memset(path, 'x', sizeof(path) - 1);
	path[sizeof(path) - 1] = 0;
	assert_int_equal(ctlmsg_connect(path, &fd), -ENAMETOOLONG);
	assert_int_equal(ctlmsg_connect("/nonexistent/qtap.sock", &fd), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_bytes),     cmocka_unit_test(test_round_trip_fds),
		cmocka_unit_test(test_byte_at_a_time), cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_oversized),      cmocka_unit_test(test_bad_bodies),
		cmocka_unit_test(test_fd_mismatch),    cmocka_unit_test(test_truncated_and_timeout),
		cmocka_unit_test(test_replies),	       cmocka_unit_test(test_connect_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
