// SPDX-License-Identifier: MIT
/*
 * tapctld's argument accessors and replies: every wrong type or range is
 * refused with a message naming the argument; absent and null are "not
 * given"; replies have the shape lib/ctlmsg's clients read.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "control/ctlproto.h"

static json_t *obj(const char *text)
{
	json_t *o = json_loads(text, JSON_ALLOW_NUL, NULL);

	assert_non_null(o);
	return o;
}

static void test_int(void **state)
{
	json_t *o = obj("{\"minor\": 3, \"big\": 5000, \"neg\": -1, \"s\": \"3\", \"n\": null,"
			" \"f\": 1.5}");
	char why[160];
	int64_t v = 42;

	assert_int_equal(ctlp_get_int(o, "minor", 0, 1023, &v, why, sizeof(why)), 0);
	assert_int_equal(v, 3);
	assert_int_equal(ctlp_get_int(o, "big", 0, 1023, &v, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "'big' must be from 0 to 1023"));
	assert_int_equal(ctlp_get_int(o, "neg", 0, 1023, &v, why, sizeof(why)), -EINVAL);
	assert_int_equal(ctlp_get_int(o, "s", 0, 1023, &v, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "'s' must be an integer"));
	assert_int_equal(ctlp_get_int(o, "f", 0, 1023, &v, why, sizeof(why)), -EINVAL);
	v = 42;
	assert_int_equal(ctlp_get_int(o, "n", 0, 1023, &v, why, sizeof(why)), -ENOENT);
	assert_int_equal(ctlp_get_int(o, "absent", 0, 1023, &v, why, sizeof(why)), -ENOENT);
	assert_int_equal(v, 42);
	json_decref(o);
}

static void test_str_and_bool(void **state)
{
	json_t *o = obj("{\"spec\": \"qcow2:/a\", \"nul\": \"a\\u0000b\", \"num\": 1,"
			" \"ro\": true, \"bad\": \"yes\"}");
	const char *s = NULL;
	char why[160];
	bool b = false;

	assert_int_equal(ctlp_get_str(o, "spec", &s, why, sizeof(why)), 0);
	assert_string_equal(s, "qcow2:/a");
	assert_int_equal(ctlp_get_str(o, "nul", &s, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "NUL"));
	assert_int_equal(ctlp_get_str(o, "num", &s, why, sizeof(why)), -EINVAL);
	assert_int_equal(ctlp_get_str(o, "absent", &s, NULL, 0), -ENOENT);
	assert_int_equal(ctlp_get_bool(o, "ro", &b, why, sizeof(why)), 0);
	assert_true(b);
	assert_int_equal(ctlp_get_bool(o, "bad", &b, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "'bad' must be true or false"));
	json_decref(o);
}

static void test_replies(void **state)
{
	json_t *ok = ctlp_ok(json_pack("{s:i}", "minor", 7));
	json_t *err = ctlp_error(-ENOENT, "no disk has minor %d", 9);
	json_t *result = NULL;
	const char *msg = NULL;

	assert_int_equal(ctlmsg_reply_status(ok, &result, &msg), 0);
	assert_int_equal(json_integer_value(json_object_get(result, "minor")), 7);
	assert_int_equal(ctlmsg_reply_status(err, &result, &msg), -ENOENT);
	assert_string_equal(msg, "no disk has minor 9");
	assert_string_equal(json_string_value(json_object_get(err, "error")), "ENOENT");
	json_decref(ok);
	json_decref(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_str_and_bool),
		cmocka_unit_test(test_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
