// SPDX-License-Identifier: MIT
/*
 * The Xen backend's reading of the frontend's ring keys: the key sets Linux,
 * Mini-OS and multi-queue frontends write, and hostile values.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "control/xenbk.h"

/* A frontend directory: NULL-terminated key, value pairs. */
static int kv_read(void *ctx, const char *key, char **out)
{
	const char *const *kv = ctx;

	for (; kv[0]; kv += 2) {
		if (strcmp(kv[0], key) == 0) {
			*out = strdup(kv[1]);
			return *out ? 0 : -ENOMEM;
		}
	}
	return -ENOENT;
}

static const struct xbk_limits lim = {
	.max_ring_page_order = 4,
	.max_queues = 4,
	.max_indirect_segments = 256,
};

static int read_ring(const char *const *kv, struct xbk_ring *ring, char *err, size_t size)
{
	memset(ring, 0, sizeof(*ring));
	err[0] = '\0';
	return xbk_read_ring(kv_read, (void *)kv, &lim, ring, err, size);
}

static void test_single_page(void **state)
{
	const char *kv[] = {
		"ring-ref", "8", "event-channel", "17", "protocol", "x86_64-abi", NULL
	};
	struct xbk_ring r;
	char err[160];

	assert_int_equal(read_ring(kv, &r, err, sizeof(err)), 0);
	assert_int_equal(r.order, 0);
	assert_int_equal(r.nr_queues, 1);
	assert_int_equal(r.refs[0][0], 8);
	assert_int_equal(r.evtchn[0], 17);
	assert_int_equal(r.proto, XBK_PROTO_X86_64);
}

static void test_missing_protocol_is_x86_32(void **state)
{
	const char *kv[] = { "ring-ref0", "9", "event-channel", "3", NULL };
	struct xbk_ring r;
	char err[160];

	assert_int_equal(read_ring(kv, &r, err, sizeof(err)), 0);
	assert_int_equal(r.refs[0][0], 9);
#if defined(__x86_64__) || defined(__i386__)
	assert_int_equal(r.proto, XBK_PROTO_X86_32);
#endif
}

static void test_multi_page(void **state)
{
	const char *kv[] = {
		"ring-page-order", "2",		 "ring-ref0", "10", "ring-ref1",     "11",
		"ring-ref2",	   "12",	 "ring-ref3", "13", "event-channel", "4",
		"protocol",	   "x86_32-abi", NULL
	};
	struct xbk_ring r;
	char err[160];

	assert_int_equal(read_ring(kv, &r, err, sizeof(err)), 0);
	assert_int_equal(r.order, 2);
	assert_int_equal(r.refs[0][3], 13);
	assert_int_equal(r.proto, XBK_PROTO_X86_32);
}

static void test_legacy_num_ring_pages(void **state)
{
	const char *kv[] = { "num-ring-pages", "2", "ring-ref0", "10", "ring-ref1", "11",
			     "event-channel",  "4", NULL };
	const char *bad[] = {
		"num-ring-pages", "3", "ring-ref0", "10", "event-channel", "4", NULL
	};
	struct xbk_ring r;
	char err[160];

	assert_int_equal(read_ring(kv, &r, err, sizeof(err)), 0);
	assert_int_equal(r.order, 1);
	assert_int_equal(read_ring(bad, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "num-ring-pages"));
}

static void test_multi_queue(void **state)
{
	const char *kv[] = { "multi-queue-num-queues",
			     "2",
			     "queue-0/ring-ref",
			     "20",
			     "queue-0/event-channel",
			     "5",
			     "queue-1/ring-ref",
			     "21",
			     "queue-1/event-channel",
			     "6",
			     "protocol",
			     "x86_64-abi",
			     NULL };
	struct xbk_ring r;
	char err[160];

	assert_int_equal(read_ring(kv, &r, err, sizeof(err)), 0);
	assert_int_equal(r.nr_queues, 2);
	assert_int_equal(r.refs[1][0], 21);
	assert_int_equal(r.evtchn[1], 6);
}

/* Each hostile set fails with a message naming the key. */
static void expect_bad(const char *const *kv, const char *key)
{
	struct xbk_ring r;
	char err[160];

	assert_true(read_ring(kv, &r, err, sizeof(err)) < 0);
	if (!strstr(err, key))
		fail_msg("error '%s' does not name %s", err, key);
}

static void test_hostile(void **state)
{
	const char *garbage[] = { "ring-ref", "abc", "event-channel", "1", NULL };
	const char *signed_ref[] = { "ring-ref", "-1", "event-channel", "1", NULL };
	const char *zero_ref[] = { "ring-ref", "0", "event-channel", "1", NULL };
	const char *huge[] = { "ring-ref", "4294967296", "event-channel", "1", NULL };
	const char *blank[] = { "ring-ref", " 5", "event-channel", "1", NULL };
	const char *no_evtchn[] = { "ring-ref", "5", NULL };
	const char *no_ref[] = { "event-channel", "5", NULL };
	const char *order[] = { "ring-page-order", "5", NULL };
	const char *queues0[] = { "multi-queue-num-queues", "0", NULL };
	const char *queues[] = { "multi-queue-num-queues", "1000", NULL };
	const char *proto[] = {
		"ring-ref", "5", "event-channel", "1", "protocol", "vax-abi", NULL
	};
	const char *missing_page[] = { "ring-page-order", "1", "ring-ref0", "5",
				       "event-channel",	  "1", NULL };
	const char *missing_queue[] = { "multi-queue-num-queues",
					"2",
					"queue-0/ring-ref",
					"5",
					"queue-0/event-channel",
					"1",
					NULL };

	expect_bad(garbage, "ring-ref");
	expect_bad(signed_ref, "ring-ref");
	expect_bad(zero_ref, "ring-ref");
	expect_bad(huge, "ring-ref");
	expect_bad(blank, "ring-ref");
	expect_bad(no_evtchn, "event-channel");
	expect_bad(no_ref, "ring-ref");
	expect_bad(order, "ring-page-order");
	expect_bad(queues0, "multi-queue-num-queues");
	expect_bad(queues, "multi-queue-num-queues");
	expect_bad(proto, "protocol");
	expect_bad(missing_page, "ring-ref1");
	expect_bad(missing_queue, "queue-1/ring-ref");
}

static void test_parse_u32(void **state)
{
	uint32_t v;

	assert_int_equal(xbk_parse_u32("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(xbk_parse_u32("4294967295", &v), 0);
	assert_int_equal(v, UINT32_MAX);
	assert_int_equal(xbk_parse_u32("4294967296", &v), -ERANGE);
	assert_int_equal(xbk_parse_u32("", &v), -EINVAL);
	assert_int_equal(xbk_parse_u32("0x10", &v), -EINVAL);
	assert_int_equal(xbk_parse_u32("+1", &v), -EINVAL);
	assert_int_equal(xbk_parse_u32("1 ", &v), -EINVAL);
	assert_int_equal(xbk_parse_u32("99999999999", &v), -EINVAL);
	assert_string_equal(xbk_state_name(4), "Connected");
	assert_string_equal(xbk_state_name(99), "invalid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_page),
		cmocka_unit_test(test_missing_protocol_is_x86_32),
		cmocka_unit_test(test_multi_page),
		cmocka_unit_test(test_legacy_num_ring_pages),
		cmocka_unit_test(test_multi_queue),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_parse_u32),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
