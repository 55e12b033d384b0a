/* SPDX-License-Identifier: MIT */
/*
 * The tap-ctl <-> tapctld control protocol (docs/control-protocol.md).
 *
 * A unix stream socket; the client sends one request and reads one reply.
 * Each message is a 16-byte little-endian header {magic "QTCP", version,
 * kind, body length, flags = 0} followed by a JSON object of that many
 * bytes.  A request is {"cmd": NAME, ...arguments}; a reply is
 * {"ok": true, ...results} or {"ok": false, "errno": N, "error": TEXT}.
 * A peer that speaks another major version gets a reply saying so.
 *
 * Everything received is untrusted: the length is bounded before anything
 * is allocated, the JSON is parsed strictly, and the ctlp_get_* accessors
 * check each argument's type and say which one was wrong.
 */
#ifndef QTAP_CONTROL_CTLPROTO_H
#define QTAP_CONTROL_CTLPROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTLP_MAGIC 0x50435451u /* "QTCP" little-endian */
#define CTLP_VERSION 1
#define CTLP_KIND_REQUEST 1
#define CTLP_KIND_REPLY 2
#define CTLP_MAX_BODY (4u << 20) /* stats of many disks stay far below */

struct ctlp_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t kind;
	uint32_t len;
	uint32_t flags;
};
_Static_assert(sizeof(struct ctlp_hdr) == 16, "ctlp header is 16 bytes");
_Static_assert(offsetof(struct ctlp_hdr, len) == 8, "ctlp length at 8");

/*
 * ctlp_hdr_check - validate a received header (byte order converted):
 * -EPROTO for a bad magic or kind, -EPROTONOSUPPORT for another version,
 * -EMSGSIZE for a body over CTLP_MAX_BODY.
 */
int ctlp_hdr_check(const struct ctlp_hdr *h, unsigned kind);

/* ctlp_hdr_decode / _encode - between the wire's little-endian and host. */
void ctlp_hdr_decode(struct ctlp_hdr *h);
void ctlp_hdr_encode(struct ctlp_hdr *h, unsigned kind, uint32_t len);

/*
 * ctlp_send - write one message with @body (not consumed) on a blocking
 * socket.  0 or -errno.
 */
int ctlp_send(int fd, unsigned kind, const json_t *body);

/*
 * ctlp_recv - read one message of @kind, waiting at most @timeout_ms in
 * total (-1: forever).  0 and *body (caller decrefs), -ETIMEDOUT,
 * -ECONNRESET when the peer closed, -EPROTO for a malformed message.
 */
int ctlp_recv(int fd, unsigned kind, int timeout_ms, json_t **body);

/* ctlp_parse_body - @len bytes of JSON that must be one object.  NULL if not. */
json_t *ctlp_parse_body(const char *buf, size_t len);

/* ctlp_ok - a new {"ok": true}. */
json_t *ctlp_ok(void);

/* ctlp_error - a new {"ok": false, "errno": -err, "error": message}. */
json_t *ctlp_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * ctlp_reply_status - 0 for an "ok" reply; for an error reply its -errno
 * with the message copied to @msg; -EPROTO for a reply that is neither.
 */
int ctlp_reply_status(const json_t *reply, char *msg, size_t size);

/*
 * Arguments of a request.  Each returns 0 with the value, -ENOENT when the
 * key is absent (*out untouched), or -EINVAL when it has the wrong type or
 * range; on -EINVAL @why (if not NULL) names the argument and the problem.
 */
int ctlp_get_str(const json_t *obj, const char *key, const char **out, char *why, size_t size);
int ctlp_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out,
		 char *why, size_t size);
int ctlp_get_bool(const json_t *obj, const char *key, bool *out, char *why, size_t size);

#endif
