/* SPDX-License-Identifier: MIT */
/*
 * Replies and argument accessors of tapctld's protocol (see ctlproto.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctlproto.h"

json_t *ctlp_ok(json_t *result)
{
	return ctlmsg_reply_ok(result);
}

json_t *ctlp_error(int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ctlmsg_reply_error(err, msg);
}

static int bad(char *why, size_t size, const char *key, const char *what)
{
	if (why)
		snprintf(why, size, "argument '%s' %s", key, what);
	return -EINVAL;
}

int ctlp_get_str(const json_t *obj, const char *key, const char **out, char *why, size_t size)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return -ENOENT;
	if (!json_is_string(v))
		return bad(why, size, key, "must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return bad(why, size, key, "holds a NUL byte");
	*out = json_string_value(v);
	return 0;
}

int ctlp_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
		 char *why, size_t size)
{
	json_t *v = json_object_get(obj, key);
	char what[96];

	if (!v || json_is_null(v))
		return -ENOENT;
	if (!json_is_integer(v))
		return bad(why, size, key, "must be an integer");
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(what, sizeof(what), "must be from %lld to %lld", (long long)min,
			 (long long)max);
		return bad(why, size, key, what);
	}
	*out = json_integer_value(v);
	return 0;
}

int ctlp_get_bool(const json_t *obj, const char *key, bool *out, char *why, size_t size)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return -ENOENT;
	if (!json_is_boolean(v))
		return bad(why, size, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}
