/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's framing and JSON helpers (see ctlproto.h).
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlproto.h"
#include "errors.h"
#include "evloop.h"

void ctlp_hdr_decode(struct ctlp_hdr *h)
{
	h->magic = le32toh(h->magic);
	h->version = le16toh(h->version);
	h->kind = le16toh(h->kind);
	h->len = le32toh(h->len);
	h->flags = le32toh(h->flags);
}

void ctlp_hdr_encode(struct ctlp_hdr *h, unsigned kind, uint32_t len)
{
	h->magic = htole32(CTLP_MAGIC);
	h->version = htole16(CTLP_VERSION);
	h->kind = htole16((uint16_t)kind);
	h->len = htole32(len);
	h->flags = 0;
}

int ctlp_hdr_check(const struct ctlp_hdr *h, unsigned kind)
{
	if (h->magic != CTLP_MAGIC)
		return -EPROTO;
	if (h->version != CTLP_VERSION)
		return -EPROTONOSUPPORT;
	if (h->kind != kind || h->flags != 0)
		return -EPROTO;
	if (h->len > CTLP_MAX_BODY)
		return -EMSGSIZE;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return neg_errno();
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctlp_send(int fd, unsigned kind, const json_t *body)
{
	struct ctlp_hdr h;
	char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	size_t len;
	int rc;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	if (len > CTLP_MAX_BODY) {
		free(text);
		return -EMSGSIZE;
	}
	ctlp_hdr_encode(&h, kind, (uint32_t)len);
	rc = write_all(fd, &h, sizeof(h));
	if (rc == 0)
		rc = write_all(fd, text, len);
	free(text);
	return rc;
}

/* Read exactly @len bytes before @deadline_ns (0: none). */
static int read_full(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		if (deadline_ns) {
			uint64_t now = evloop_now_ns();
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int ms;

			if (now >= deadline_ns)
				return -ETIMEDOUT;
			ms = (int)((deadline_ns - now + 999999) / 1000000);
			n = poll(&pfd, 1, ms);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return neg_errno();
			if (n == 0)
				return -ETIMEDOUT;
		}
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return neg_errno();
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

json_t *ctlp_parse_body(const char *buf, size_t len)
{
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);

	if (v && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

int ctlp_recv(int fd, unsigned kind, int timeout_ms, json_t **body)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : evloop_now_ns() + (uint64_t)timeout_ms * 1000000;
	struct ctlp_hdr h;
	char *buf;
	int rc;

	rc = read_full(fd, &h, sizeof(h), deadline);
	if (rc < 0)
		return rc;
	ctlp_hdr_decode(&h);
	rc = ctlp_hdr_check(&h, kind);
	if (rc < 0)
		return rc;
	buf = malloc(h.len ? h.len : 1);
	if (!buf)
		return -ENOMEM;
	rc = read_full(fd, buf, h.len, deadline);
	if (rc == 0) {
		*body = ctlp_parse_body(buf, h.len);
		if (!*body)
			rc = -EPROTO;
	}
	free(buf);
	return rc;
}

json_t *ctlp_ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

json_t *ctlp_error(int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:i, s:s}", "ok", 0, "errno", err < 0 ? -err : err, "error", msg);
}

int ctlp_reply_status(const json_t *reply, char *msg, size_t size)
{
	json_t *ok = json_object_get(reply, "ok");
	json_t *e = json_object_get(reply, "errno");
	json_t *text = json_object_get(reply, "error");

	if (json_is_true(ok))
		return 0;
	if (!json_is_false(ok) || !json_is_integer(e) || !json_is_string(text) ||
	    json_integer_value(e) <= 0 || json_integer_value(e) > 4095)
		return -EPROTO;
	snprintf(msg, size, "%s", json_string_value(text));
	return -(int)json_integer_value(e);
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
