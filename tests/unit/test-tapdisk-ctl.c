// SPDX-License-Identifier: MIT
/*
 * tapdisk's control commands and its control socket.
 *
 * First every command through td_ctl_dispatch in this process (open, info,
 * pause, resume, stats, close, help, shutdown, frontends detached on close,
 * open hooks, argument checking).  Then the real program, started as
 * tapctld would start it: malformed, oversized and foreign-version
 * messages get an error reply and the process keeps serving, fds sent
 * along are not leaked, connections beyond the limit are refused with a
 * reply, a stale socket is replaced and a live one refused, and SIGTERM
 * shuts it down cleanly.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "tapdisk/ctl.h"
#include "ctlmsg.h"
#include "evloop.h"
#include "qcow2-test-util.h"
#include "tapdisk/tapdisk.h"

#define MiB (1024ull * 1024)

static const char *make_image(const char *name)
{
	const char *path = qt_path(name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16 * MiB), 0);
	close(fd);
	return path;
}

static char *spec_of(const char *path)
{
	static char buf[PATH_MAX + 8];

	snprintf(buf, sizeof(buf), "raw:%s", path);
	return buf;
}

/* ---- in process ---- */

struct call_out {
	json_t *reply;
	json_t *result;
	const char *message;
	int err;
	bool quit;
};

static struct call_out call(struct tapdisk *td, const char *json, int *fds, unsigned nr_fds)
{
	json_error_t jerr;
	json_t *req = json_loads(json, 0, &jerr);
	int reply_fds[CTLMSG_MAX_FDS];
	unsigned nr_reply = 0;
	struct call_out o = { 0 };

	assert_non_null(req);
	o.reply = td_ctl_dispatch(td, req, fds, nr_fds, reply_fds, &nr_reply, &o.quit);
	assert_non_null(o.reply);
	o.err = ctlmsg_reply_status(o.reply, &o.result, &o.message);
	assert_int_equal(nr_reply, 0);
	json_decref(req);
	return o;
}

/* The error of @json, with its message containing @want. */
static void expect_err(struct tapdisk *td, const char *json, int err, const char *want)
{
	struct call_out o = call(td, json, NULL, 0);

	if (o.err != err || !strstr(o.message, want))
		fail_msg("%s: got %d '%s', wanted %d '%s'", json, o.err, o.message, err, want);
	json_decref(o.reply);
}

static json_t *expect_ok(struct tapdisk *td, const char *json)
{
	struct call_out o = call(td, json, NULL, 0);

	if (o.err)
		fail_msg("%s: %s", json, o.message);
	return o.reply;
}

static const char *state_of(struct tapdisk *td)
{
	static char state[32];
	json_t *r = expect_ok(td, "{\"cmd\":\"info\"}"), *res = json_object_get(r, "result");
	json_t *img = json_object_get(res, "image");

	snprintf(state, sizeof(state), "%s",
		 img ? json_string_value(json_object_get(img, "state"))
		     : json_string_value(json_object_get(res, "state")));
	json_decref(r);
	return state;
}

struct fake_fe {
	struct td_frontend fe;
	unsigned detached;
};

static void fake_detach(struct td_frontend *fe)
{
	((struct fake_fe *)fe->opaque)->detached++;
}

static int fake_describe(struct td_frontend *fe, json_t *obj)
{
	return json_object_set_new(obj, "socket", json_string("/fake"));
}

static int hook_calls;
static int hook_result;

static int open_hook(struct tapdisk *td, struct td_open_hook *h)
{
	hook_calls++;
	return hook_result;
}

static void td_init(struct tapdisk *td)
{
	memset(td, 0, sizeof(*td));
	assert_int_equal(evloop_new(&td->loop), 0);
}

static void test_commands(void **state)
{
	const char *img = make_image("cmds.raw");
	struct fake_fe ff = {
		.fe = { .kind = "fake", .detach = fake_detach, .describe = fake_describe }
	};
	struct tapdisk td;
	char req[PATH_MAX + 128];
	json_t *r, *res;

	td_init(&td);
	ff.fe.opaque = &ff;
	assert_string_equal(state_of(&td), "closed");
	expect_err(&td, "{\"cmd\":\"pause\"}", -ENODEV, "no image is open");
	expect_err(&td, "{\"cmd\":\"stats\"}", -ENODEV, "no image is open");
	expect_err(&td, "{\"cmd\":\"open\"}", -EINVAL, "argument 'spec' is required");
	expect_err(&td, "{\"cmd\":\"open\",\"args\":{\"spec\":7}}", -EINVAL, "must be a string");
	snprintf(req, sizeof(req), "{\"cmd\":\"open\",\"args\":{\"spec\":\"%s\",\"queues\":0}}",
		 spec_of(img));
	expect_err(&td, req, -EINVAL, "'queues' must be an integer from 1 to 64");
	snprintf(req, sizeof(req),
		 "{\"cmd\":\"open\",\"args\":{\"spec\":\"%s\",\"options\":\"l2-cache-size=1M\"}}",
		 spec_of(img));
	expect_err(&td, req, -EINVAL, "driver raw refused option 'l2-cache-size=1M'");
	snprintf(req, sizeof(req), "{\"cmd\":\"open\",\"args\":{\"spec\":\"%s\",\"engine\":\"x\"}}",
		 spec_of(img));
	expect_err(&td, req, -EINVAL, "engine 'x'");
	expect_err(&td, "{\"cmd\":\"open\",\"args\":{\"spec\":\"raw:/nonexistent/x\"}}", -ENOENT,
		   "open raw:/nonexistent/x");

	snprintf(req, sizeof(req),
		 "{\"cmd\":\"open\",\"args\":{\"spec\":\"%s\",\"queues\":2,\"readonly\":true,"
		 "\"queue_depth\":8,\"engine\":\"sync\"}}",
		 spec_of(img));
	r = expect_ok(&td, req);
	res = json_object_get(json_object_get(r, "result"), "image");
	assert_int_equal(json_integer_value(json_object_get(res, "size")), 16 * MiB);
	assert_int_equal(json_integer_value(json_object_get(res, "queues")), 2);
	assert_int_equal(json_integer_value(json_object_get(res, "queue_depth")), 8);
	assert_true(json_is_true(json_object_get(res, "readonly")));
	assert_string_equal(json_string_value(json_object_get(res, "engine")), "sync");
	json_decref(r);
	expect_err(&td, req, -EBUSY, "is already open");

	tapdisk_frontend_add(&td, &ff.fe);
	r = expect_ok(&td, "{\"cmd\":\"info\"}");
	res = json_array_get(json_object_get(json_object_get(r, "result"), "frontends"), 0);
	assert_string_equal(json_string_value(json_object_get(res, "kind")), "fake");
	assert_string_equal(json_string_value(json_object_get(res, "socket")), "/fake");
	json_decref(r);

	r = expect_ok(&td, "{\"cmd\":\"stats\",\"args\":{\"per_queue\":true}}");
	res = json_object_get(r, "result");
	assert_int_equal(json_array_size(json_object_get(res, "queues")), 2);
	assert_non_null(json_object_get(json_object_get(res, "ops"), "read"));
	json_decref(r);
	expect_err(&td, "{\"cmd\":\"stats\",\"args\":{\"per_queue\":1}}", -EINVAL,
		   "must be true or false");
	/* a ring that must go when its connection closes needs a connection */
	expect_err(&td,
		   "{\"cmd\":\"attach-ring\",\"args\":{\"transport\":\"local\","
		   "\"detach_on_close\":true}}",
		   -ENOTCONN, "detach_on_close needs a control connection");

	json_decref(expect_ok(&td, "{\"cmd\":\"pause\"}"));
	assert_string_equal(state_of(&td), "paused");
	expect_err(&td, "{\"cmd\":\"pause\"}", -EALREADY, "already paused");
	expect_err(&td, "{\"cmd\":\"resume\",\"args\":{\"spec\":\"raw:/nonexistent/y\"}}", -ENOENT,
		   "still paused");
	assert_string_equal(state_of(&td), "paused");
	json_decref(expect_ok(&td, "{\"cmd\":\"resume\"}"));
	assert_string_equal(state_of(&td), "running");
	expect_err(&td, "{\"cmd\":\"resume\"}", -EALREADY, "not paused");

	json_decref(expect_ok(&td, "{\"cmd\":\"close\"}"));
	assert_int_equal(ff.detached, 1);
	assert_string_equal(state_of(&td), "closed");
	expect_err(&td, "{\"cmd\":\"close\"}", -ENODEV, "no image is open");
	evloop_free(td.loop);
}

static void test_requests(void **state)
{
	struct tapdisk td;
	struct call_out o;
	json_t *r;
	int p[2];
	char c;

	td_init(&td);
	expect_err(&td, "{\"cmd\":\"nosuch\"}", -EOPNOTSUPP, "unknown command 'nosuch'");
	expect_err(&td, "{\"command\":\"info\"}", -EINVAL, "unknown member 'command'");
	expect_err(&td, "{\"cmd\":5}", -EINVAL, "'cmd' must be a string");
	expect_err(&td, "{}", -EINVAL, "'cmd' must be a string");
	expect_err(&td, "{\"cmd\":\"info\",\"args\":[]}", -EINVAL, "'args' must be an object");
	expect_err(&td, "{\"cmd\":\"info\",\"args\":{\"verbose\":true}}", -EINVAL,
		   "unknown argument 'verbose'");
	r = expect_ok(&td, "{\"cmd\":\"help\"}");
	assert_true(json_array_size(json_object_get(json_object_get(r, "result"), "commands")) >=
		    8);
	json_decref(r);
	/* fds sent with a command that takes none are closed */
	assert_int_equal(pipe(p), 0);
	o = call(&td, "{\"cmd\":\"info\"}", &p[1], 1);
	assert_int_equal(o.err, 0);
	assert_int_equal(p[1], -1);
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	json_decref(o.reply);
	o = call(&td, "{\"cmd\":\"shutdown\"}", NULL, 0);
	assert_int_equal(o.err, 0);
	assert_true(o.quit);
	json_decref(o.reply);
	evloop_free(td.loop);
}

static void test_open_hooks(void **state)
{
	const char *img = make_image("hooks.raw");
	struct td_open_hook h = { .fn = open_hook };
	struct td_vbd_opts o = { .nr_queues = 1 };
	struct tapdisk td;

	td_init(&td);
	tapdisk_open_hook_add(&td, &h);
	hook_calls = 0;
	hook_result = -EADDRINUSE;
	assert_int_equal(tapdisk_open(&td, spec_of(img), &o), -EADDRINUSE);
	assert_null(td.vbd);
	hook_result = 0;
	assert_int_equal(tapdisk_open(&td, spec_of(img), &o), 0);
	assert_int_equal(hook_calls, 2);
	tapdisk_close(&td);
	tapdisk_close(&td);
	evloop_free(td.loop);
}

static void test_drv_opts_parse(void **state)
{
	struct drv_opt *o = NULL;
	unsigned n = 0;

	assert_int_equal(tapdisk_parse_drv_opts("a=1,bb=x=y", &o, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(o[0].key, "a");
	assert_string_equal(o[0].value, "1");
	assert_string_equal(o[1].key, "bb");
	assert_string_equal(o[1].value, "x=y");
	free(o);
	assert_int_equal(tapdisk_parse_drv_opts("a=1,,b=2", &o, &n), -EINVAL);
	assert_int_equal(tapdisk_parse_drv_opts("=1", &o, &n), -EINVAL);
	assert_int_equal(tapdisk_parse_drv_opts("novalue", &o, &n), -EINVAL);
}

/* ---- the program ---- */

static pid_t spawned[8];
static unsigned nr_spawned;

static void kill_spawned(void)
{
	for (unsigned i = 0; i < nr_spawned; i++)
		if (spawned[i] > 0)
			kill(spawned[i], SIGKILL);
}

static const char *tapdisk_bin(void)
{
	static char path[PATH_MAX];
	const char *build = getenv("BUILD");

	snprintf(path, sizeof(path), "%s/bin/tapdisk", build && *build ? build : "build");
	return path;
}

/* Start `tapdisk -f --ctl @sock [-a raw:@img]`; its pid, its output in @log. */
static pid_t spawn_tapdisk(const char *sock, const char *img, const char *log)
{
	const char *argv[] = {
		tapdisk_bin(), "-f", "--ctl", sock, img ? "-a" : NULL, img ? spec_of(img) : NULL,
		NULL
	};
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	if (nr_spawned < 8)
		spawned[nr_spawned++] = pid;
	return pid;
}

/* Exit status of @pid within @secs, or -1 (and it is killed). */
static int wait_exit(pid_t pid, int secs)
{
	time_t end = time(NULL) + secs;
	int status;

	while (time(NULL) <= end) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* A connection to @sock, waiting for it to be served (10 s). */
static int connect_wait(const char *sock)
{
	time_t end = time(NULL) + 10;
	int fd, err;

	do {
		err = ctlmsg_connect(sock, &fd);
		if (!err)
			return fd;
		usleep(20000);
	} while (time(NULL) <= end);
	fail_msg("tapdisk never served %s: %s", sock, strerror(-err));
	return -1;
}

static json_t *rpc(int fd, const char *cmd, json_t *args)
{
	json_t *req = ctlmsg_request(cmd, args), *reply = NULL;

	assert_int_equal(ctlmsg_call(fd, req, NULL, 0, &reply, 10000), 0);
	json_decref(req);
	return reply;
}

static void raw_send(int fd, uint32_t magic, uint16_t version, uint32_t len, const char *body)
{
	size_t blen = body ? strlen(body) : 0;
	uint8_t m[256] = { 0 };

	assert_true(blen <= sizeof(m) - 16);
	memcpy(m, &magic, 4);
	memcpy(m + 4, &version, 2);
	memcpy(m + 8, &len, 4);
	if (body)
		memcpy(m + 16, body, blen);
	/* one write: the server may hang up as soon as it has read a bad header */
	assert_int_equal(write(fd, m, 16 + blen), (ssize_t)(16 + blen));
}

/* Does the server hang up on @fd (within @ms)? */
static bool hung_up(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	ssize_t n;

	if (poll(&p, 1, ms) != 1)
		return false;
	/* with our bytes unread on its side, the close is a reset */
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* The reply to a raw message: its errno, and whether the server hung up within @ms. */
static int raw_reply(int fd, int ms, bool *closed)
{
	int fds[CTLMSG_MAX_FDS];
	unsigned nr;
	json_t *reply;
	int err;

	assert_int_equal(ctlmsg_recv(fd, &reply, fds, &nr, 10000, NULL, 0), 0);
	err = ctlmsg_reply_status(reply, NULL, NULL);
	json_decref(reply);
	*closed = hung_up(fd, ms);
	return err;
}

static void test_program_bad_input(void **state)
{
	const char *img = make_image("prog.raw"), *sock = qt_path("prog.sock");
	pid_t pid = spawn_tapdisk(sock, img, qt_path("prog.log"));
	int fd = connect_wait(sock), conns[40], p[2], fds[1];
	json_t *r, *req;
	bool closed;
	unsigned i, refused = 0;
	char c;

	r = rpc(fd, "info", NULL);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"), "pid")),
			 pid);
	json_decref(r);
	/* a bad body: an error reply, and the connection goes on */
	raw_send(fd, CTLMSG_MAGIC, CTLMSG_VERSION, 6, "{nope}");
	assert_int_equal(raw_reply(fd, 100, &closed), -EBADMSG);
	assert_false(closed);
	json_decref(rpc(fd, "info", NULL));
	/* framing that cannot be trusted: an error reply, then the end */
	raw_send(fd, 0x12345678, CTLMSG_VERSION, 2, "{}");
	assert_int_equal(raw_reply(fd, 5000, &closed), -EPROTO);
	assert_true(closed);
	close(fd);
	fd = connect_wait(sock);
	raw_send(fd, CTLMSG_MAGIC, 99, 2, "{}");
	assert_int_equal(raw_reply(fd, 5000, &closed), -EPROTO);
	close(fd);
	fd = connect_wait(sock);
	raw_send(fd, CTLMSG_MAGIC, CTLMSG_VERSION, CTLMSG_MAX_BODY + 1, NULL);
	assert_int_equal(raw_reply(fd, 5000, &closed), -EPROTO);
	assert_true(closed);
	close(fd);
	/* half a message, then gone */
	fd = connect_wait(sock);
	raw_send(fd, CTLMSG_MAGIC, CTLMSG_VERSION, 100, "{\"cmd\":");
	close(fd);
	/* fds sent along are closed by the server */
	fd = connect_wait(sock);
	assert_int_equal(pipe(p), 0);
	fds[0] = p[1];
	req = ctlmsg_request("info", NULL);
	assert_int_equal(ctlmsg_call(fd, req, fds, 1, &r, 10000), 0);
	json_decref(req);
	json_decref(r);
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	/* too many connections: the extra ones are told so */
	for (i = 0; i < 40; i++)
		conns[i] = connect_wait(sock);
	for (i = 0; i < 40; i++) {
		json_t *reply = NULL;
		int nr_fds = 0, got[CTLMSG_MAX_FDS];

		if (ctlmsg_recv(conns[i], &reply, got, (unsigned *)&nr_fds, 200, NULL, 0) == 0) {
			assert_int_equal(ctlmsg_reply_status(reply, NULL, NULL), -EMFILE);
			refused++;
			json_decref(reply);
		}
	}
	assert_int_equal(refused, 40 - 31); /* 32 in all, @fd among them */
	for (i = 0; i < 40; i++)
		close(conns[i]);
	json_decref(rpc(fd, "stats", NULL));
	close(fd);
	/* SIGTERM: a clean exit, the socket gone */
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(wait_exit(pid, 20), 0);
	assert_int_not_equal(access(sock, F_OK), 0);
}

static void test_program_sockets(void **state)
{
	const char *sock = qt_path("spawn.sock"), *log = qt_path("spawn.log"), *img;
	pid_t a, b;
	int fd;
	json_t *r;
	char req[PATH_MAX + 64];

	/* spawned without an image, it waits for `open` */
	a = spawn_tapdisk(sock, NULL, log);
	fd = connect_wait(sock);
	r = rpc(fd, "info", NULL);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(r, "result"), "state")),
		"closed");
	json_decref(r);
	img = make_image("spawn.raw");
	snprintf(req, sizeof(req), "{\"spec\":\"%s\"}", spec_of(img));
	r = rpc(fd, "open", json_loads(req, 0, NULL));
	assert_int_equal(ctlmsg_reply_status(r, NULL, NULL), 0);
	json_decref(r);
	/* a second tapdisk on a live socket is refused */
	b = spawn_tapdisk(sock, NULL, log);
	assert_int_equal(wait_exit(b, 20), 1);
	json_decref(rpc(fd, "info", NULL));
	close(fd);
	/* one killed leaves its socket behind; the next replaces it */
	kill(a, SIGKILL);
	assert_int_equal(wait_exit(a, 20), 128 + SIGKILL);
	assert_int_equal(access(sock, F_OK), 0);
	b = spawn_tapdisk(sock, NULL, log);
	fd = connect_wait(sock);
	r = rpc(fd, "shutdown", NULL);
	assert_int_equal(ctlmsg_reply_status(r, NULL, NULL), 0);
	json_decref(r);
	close(fd);
	assert_int_equal(wait_exit(b, 20), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),	  cmocka_unit_test(test_requests),
		cmocka_unit_test(test_open_hooks),	  cmocka_unit_test(test_drv_opts_parse),
		cmocka_unit_test(test_program_bad_input), cmocka_unit_test(test_program_sockets),
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	atexit(kill_spawned);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc;
}
