/* SPDX-License-Identifier: MIT */
/*
 * The tap-ctl <-> tapctld control protocol (docs/tapctld-protocol.md), on
 * lib/ctlmsg's framing: requests {"cmd": NAME, "args": {...}}, replies
 * {"ok": true, "result": {...}} or {"ok": false, "errno", "error",
 * "message"}.  These helpers build replies and read arguments; everything
 * received is untrusted, and the accessors check each argument's type and
 * range and say which one was wrong.
 */
#ifndef QTAP_CONTROL_CTLPROTO_H
#define QTAP_CONTROL_CTLPROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctlmsg.h"

/* The version of tapctld's command set ("version" reports it). */
#define CTLP_COMMANDS_VERSION 1

/* ctlp_ok - an ok reply carrying @result (stolen; NULL: {}). */
json_t *ctlp_ok(json_t *result);

/* ctlp_error - an error reply for -@err with a formatted message. */
json_t *ctlp_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Arguments of a request.  Each returns 0 with the value, -ENOENT when the
 * key is absent or null (*out untouched), or -EINVAL when it has the wrong
 * type or range; on -EINVAL @why (if not NULL) names the argument and the
 * problem.
 */
int ctlp_get_str(const json_t *obj, const char *key, const char **out, char *why, size_t size);
int ctlp_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
		 char *why, size_t size);
int ctlp_get_bool(const json_t *obj, const char *key, bool *out, char *why, size_t size);

#endif
