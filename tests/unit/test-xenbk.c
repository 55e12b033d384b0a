// SPDX-License-Identifier: MIT
/*
 * The Xen backend's handshake, through the real libxenstore, against
 * tests/tools/fake-xenstored.  The test plays the toolstack (backend and
 * frontend directories, as libxl writes them), the hotplug script
 * (physical-device-path, hotplug-status) and a scripted blkfront (ring keys,
 * states); tapctld's side is a fake struct xbk_ops that records what the
 * backend asked of the tapdisk.  The ring itself is tested end to end with
 * a real tapdisk in tests/integration/test-ctl-xen.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include <cmocka.h>

#include "control/xenbk.h"
#include "control/xstore.h"
#include "evloop.h"

#define BE "/local/domain/0/backend/vbd3/7/51712"
#define FE "/local/domain/7/device/vbd/51712"
#define BE2 "/local/domain/0/backend/vbd3/8/51728"
#define FE2 "/local/domain/8/device/vbd/51728"
#define PHYS "/run/qtap/tapdisk-3.sock"

static pid_t xsd_pid;
static char sock[512], pidfile[512];
static struct xstore *bxs;     /* the backend's handle */
static struct xs_handle *tool; /* the toolstack's and the frontend's */
static struct xbk *bk;

/* What the fake tapctld saw. */
static struct {
	uint64_t size_bytes;
	bool gone;
	int connects, disconnects;
	struct xbk_ring ring;
} td;

static int fake_find(void *opaque, const char *path, int *minor)
{
	if (strcmp(path, PHYS) != 0)
		return -ENOENT;
	*minor = 3;
	return 0;
}

static int fake_info(void *opaque, int minor, struct xbk_disk *out)
{
	assert_int_equal(minor, 3);
	*out = (struct xbk_disk){ .size_bytes = td.size_bytes,
				  .sector_bytes = 512,
				  .phys_sector_bytes = 4096,
				  .discard_granularity_bytes = 65536,
				  .can_discard = true,
				  .limits = { .max_ring_page_order = 4,
					      .max_queues = 8,
					      .max_indirect_segments = 256 } };
	return 0;
}

static int fake_connect(void *opaque, int minor, const struct xbk_ring *ring, char *err,
			size_t size)
{
	td.connects++;
	td.ring = *ring;
	return 0;
}

static int fake_disconnect(void *opaque, int minor)
{
	td.disconnects++;
	return 0;
}

static const struct xbk_ops ops = {
	.find = fake_find,
	.disk_info = fake_info,
	.connect = fake_connect,
	.disconnect = fake_disconnect,
};

static uint64_t deadline_ns(void)
{
	return evloop_now_ns() + (getenv("QTAP_VALGRIND") ? 40 : 10) * 1000000000ull;
}

static void put(const char *dir, const char *key, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	assert_true(xs_write(tool, XBT_NULL, path, val, strlen(val)));
}

/* The value at dir/key, or "" when there is none (static buffer). */
static const char *get(const char *dir, const char *key)
{
	static char buf[256];
	char path[256];
	unsigned len;
	char *v;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	v = xs_read(tool, XBT_NULL, path, &len);
	snprintf(buf, sizeof(buf), "%s", v ? v : "");
	free(v);
	return buf;
}

/* Run the backend until dir/key reads @want, or fail at the deadline. */
static void pump_until(const char *dir, const char *key, const char *want)
{
	uint64_t end = deadline_ns();
	struct pollfd pfd = { .fd = xstore_fd(bxs), .events = POLLIN };

	for (;;) {
		xbk_process(bk);
		if (strcmp(get(dir, key), want) == 0)
			return;
		if (evloop_now_ns() > end)
			fail_msg("%s/%s is '%s', wanted '%s'", dir, key, get(dir, key), want);
		poll(&pfd, 1, 50);
	}
}

/* The toolstack creates a device, as libxl does for backendtype=tap. */
static void toolstack_add(const char *be, const char *fe, const char *domid)
{
	put(be, "frontend", fe);
	put(be, "frontend-id", domid);
	put(be, "online", "1");
	put(be, "mode", "w");
	put(be, "params", "qcow2:/images/vm.qcow2");
	put(be, "state", "1");
	put(fe, "backend", be);
	put(fe, "backend-id", "0");
	put(fe, "state", "1");
}

static void hotplug(const char *be, const char *phys)
{
	put(be, "physical-device-path", phys);
	put(be, "hotplug-status", "connected");
}

static int setup(void **state)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	const char *dir = getenv("QTAP_TEST_DIR") ? getenv("QTAP_TEST_DIR") : "/tmp";
	struct xbk_limits lim = { .max_ring_page_order = 4,
				  .max_queues = 4,
				  .max_indirect_segments = 256 };
	char prog[512];
	uint64_t end;

	snprintf(sock, sizeof(sock), "%s/test-xenbk.%d.sock", dir, (int)getpid());
	snprintf(pidfile, sizeof(pidfile), "%s/test-xenbk.%d.pid", dir, (int)getpid());
	snprintf(prog, sizeof(prog), "%s/tests/bin/fake-xenstored", build);
	unlink(pidfile);
	xsd_pid = fork();
	assert_true(xsd_pid >= 0);
	if (xsd_pid == 0) {
		/* Gone with us, even when a failed setup skips the teardown. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl(prog, prog, "--pidfile", pidfile, sock, (char *)NULL);
		_exit(127);
	}
	/* The pid file comes after listen(); the socket file already at bind(). */
	end = deadline_ns();
	while (access(pidfile, F_OK) != 0) {
		assert_true(evloop_now_ns() < end);
		usleep(10000);
	}
	setenv("XENSTORED_PATH", sock, 1);
	assert_int_equal(xstore_open(&bxs), 0);
	tool = xs_open(0);
	assert_non_null(tool);
	memset(&td, 0, sizeof(td));
	td.size_bytes = 1ull << 30;
	assert_int_equal(xbk_new(bxs, 0, "vbd3", &lim, &ops, NULL, &bk), 0);
	return 0;
}

static int teardown(void **state)
{
	xbk_free(bk);
	xstore_close(bxs);
	xs_close(tool);
	kill(xsd_pid, SIGTERM);
	waitpid(xsd_pid, NULL, 0);
	unlink(pidfile);
	return 0;
}

/* Up to InitWait: the hotplug script runs, then limits published and state 2. */
static void to_initwait(const char *be, const char *fe, const char *domid)
{
	toolstack_add(be, fe, domid);
	xbk_process(bk);
	assert_string_equal(get(be, "state"), "1"); /* waits for the hotplug script */
	hotplug(be, PHYS);
	pump_until(be, "state", "2");
	assert_string_equal(get(be, "max-ring-page-order"), "4");
	assert_string_equal(get(be, "max-ring-pages"), "16");
	/* The tapdisk accepts 8 queues; tapctld caps them at 4. */
	assert_string_equal(get(be, "multi-queue-max-queues"), "4");
	assert_string_equal(get(be, "feature-max-indirect-segments"), "256");
}

static void frontend_connect_one_page(const char *fe)
{
	put(fe, "ring-ref", "8");
	put(fe, "event-channel", "17");
	put(fe, "protocol", "x86_64-abi");
	put(fe, "state", "3");
}

static void test_handshake(void **state)
{
	to_initwait(BE, FE, "7");
	frontend_connect_one_page(FE);
	pump_until(BE, "state", "4");
	assert_int_equal(td.connects, 1);
	assert_int_equal(td.ring.domid, 7);
	assert_int_equal(td.ring.devid, 51712);
	assert_int_equal(td.ring.refs[0][0], 8);
	assert_int_equal(td.ring.evtchn[0], 17);
	assert_int_equal(td.ring.proto, XBK_PROTO_X86_64);
	assert_string_equal(get(BE, "sectors"), "2097152");
	assert_string_equal(get(BE, "info"), "0");
	assert_string_equal(get(BE, "sector-size"), "512");
	assert_string_equal(get(BE, "physical-sector-size"), "4096");
	assert_string_equal(get(BE, "feature-flush-cache"), "1");
	assert_string_equal(get(BE, "feature-discard"), "1");
	assert_string_equal(get(BE, "discard-granularity"), "65536");
	put(FE, "state", "4");

	/* Online resize: sectors rewritten, Connected written again. */
	td.size_bytes = 2ull << 30;
	xbk_resize(bk, 3);
	assert_string_equal(get(BE, "sectors"), "4194304");
	assert_string_equal(get(BE, "state"), "4");

	/* Teardown: Closing, then Closed with the ring dropped. */
	put(FE, "state", "5");
	pump_until(BE, "state", "5");
	assert_int_equal(td.disconnects, 0);
	put(FE, "state", "6");
	pump_until(BE, "state", "6");
	assert_int_equal(td.disconnects, 1);

	/* Reconnection with a 4-page ring. */
	put(FE, "state", "1");
	pump_until(BE, "state", "2");
	put(FE, "ring-page-order", "2");
	put(FE, "ring-ref0", "20");
	put(FE, "ring-ref1", "21");
	put(FE, "ring-ref2", "22");
	put(FE, "ring-ref3", "23");
	put(FE, "state", "4"); /* Mini-OS style: straight to Connected */
	pump_until(BE, "state", "4");
	assert_int_equal(td.connects, 2);
	assert_int_equal(td.ring.order, 2);
	assert_int_equal(td.ring.refs[0][3], 23);

	/* The toolstack removes the device: the ring goes. */
	assert_true(xs_rm(tool, XBT_NULL, BE));
	for (uint64_t end = deadline_ns(); td.disconnects < 2;) {
		xbk_process(bk);
		assert_true(evloop_now_ns() < end);
		usleep(10000);
	}
}

static void test_read_only_and_no_discard(void **state)
{
	toolstack_add(BE, FE, "7");
	put(BE, "mode", "r");
	put(BE, "discard-enable", "0");
	hotplug(BE, PHYS);
	pump_until(BE, "state", "2");
	frontend_connect_one_page(FE);
	pump_until(BE, "state", "4");
	assert_string_equal(get(BE, "info"), "4");
	assert_string_equal(get(BE, "feature-discard"), "0");
}

/* Garbage keys: that device is in the error state, the other one connects. */
static void test_garbage_keys(void **state)
{
	to_initwait(BE, FE, "7");
	to_initwait(BE2, FE2, "8");
	put(FE, "ring-ref", "12abc");
	put(FE, "event-channel", "17");
	put(FE, "state", "3");
	pump_until(BE, "state", "5");
	assert_non_null(strstr(get(BE, "error"), "ring-ref"));
	assert_int_equal(td.connects, 0);

	frontend_connect_one_page(FE2);
	pump_until(BE2, "state", "4");
	assert_int_equal(td.connects, 1);
	assert_int_equal(td.ring.domid, 8);

	/* The broken frontend closes and comes back with good keys. */
	put(FE, "state", "6");
	pump_until(BE, "state", "6");
	put(FE, "state", "1");
	pump_until(BE, "state", "2");
	assert_string_equal(get(BE, "error"), "");
	frontend_connect_one_page(FE);
	pump_until(BE, "state", "4");
	assert_int_equal(td.connects, 2);
}

static void test_missing_and_bad_values(void **state)
{
	to_initwait(BE, FE, "7");
	put(FE, "ring-ref", "8"); /* no event-channel */
	put(FE, "state", "3");
	pump_until(BE, "state", "5");
	assert_non_null(strstr(get(BE, "error"), "event-channel"));

	put(FE2, "state", "1");
	toolstack_add(BE2, FE2, "8");
	hotplug(BE2, "/nowhere"); /* names no disk of ours */
	pump_until(BE2, "state", "5");
	assert_non_null(strstr(get(BE2, "error"), "/nowhere"));
	assert_int_equal(td.connects, 0);
}

static void test_bad_frontend_state_and_path(void **state)
{
	to_initwait(BE, FE, "7");
	put(FE, "state", "banana");
	pump_until(BE, "state", "5");
	assert_non_null(strstr(get(BE, "error"), "banana"));

	/* A frontend path in another domain is refused. */
	put(BE2, "frontend", "/local/domain/9/device/vbd/51728");
	put(BE2, "state", "1");
	pump_until(BE2, "state", "5");
	assert_non_null(strstr(get(BE2, "error"), "frontend"));
}

/* The tapdisk dies while connected: the frontend is told (Closing). */
static void test_disk_gone(void **state)
{
	char line[256];

	to_initwait(BE, FE, "7");
	frontend_connect_one_page(FE);
	pump_until(BE, "state", "4");
	xbk_describe(bk, 3, line, sizeof(line));
	assert_string_equal(line, "vbd3/7/51712 Connected");
	xbk_disk_gone(bk, 3, "its tapdisk died");
	assert_string_equal(get(BE, "state"), "5");
	assert_non_null(strstr(get(BE, "error"), "minor 3: its tapdisk died"));
}

/* Transactions that keep failing with EAGAIN are retried. */
static void test_restart_takes_up_connected(void **state)
{
	struct xbk_limits lim = { .max_ring_page_order = 4, .max_queues = 4 };

	to_initwait(BE, FE, "7");
	frontend_connect_one_page(FE);
	pump_until(BE, "state", "4");
	put(FE, "state", "4");
	assert_int_equal(td.connects, 1);

	/* A new backend (tapctld restarted) finds the device Connected. */
	xbk_free(bk);
	assert_int_equal(xbk_new(bxs, 0, "vbd3", &lim, &ops, NULL, &bk), 0);
	for (uint64_t end = deadline_ns(); td.connects < 2;) {
		struct pollfd pfd = { .fd = xstore_fd(bxs), .events = POLLIN };

		xbk_process(bk);
		assert_true(evloop_now_ns() < end);
		poll(&pfd, 1, 50);
	}
	assert_string_equal(get(BE, "state"), "4");
	put(FE, "state", "6");
	pump_until(BE, "state", "6");
	assert_int_equal(td.disconnects, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_and_no_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_frontend_state_and_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_takes_up_connected, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
