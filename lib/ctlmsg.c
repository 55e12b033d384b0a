/* SPDX-License-Identifier: MIT */
/*
 * Control message framing (ctlmsg.h, docs/control-protocol.md).
 *
 * A reader never reads past the message it is assembling, so fds sent with
 * the next message stay in the socket with it, and a server can stop
 * between messages.  Bodies are small control documents: they are
 * allocated per message (this is the control path, not the I/O path).
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "errors.h"

/* ---- deadlines ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for @events on @sock until @deadline (ms, -1: none); 0 or -errno. */
static int wait_fd(int sock, short events, int64_t deadline)
{
	struct pollfd p = { .fd = sock, .events = events };

	for (;;) {
		int left = deadline < 0 ? -1 : (int)(deadline > now_ms() ? deadline - now_ms() : 0);
		int n = poll(&p, 1, left);

		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return neg_errno();
	}
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* ---- sending ---- */

/* sendmsg of what is left, the fds with the first byte only. */
static int send_all(int sock, struct iovec *iov, unsigned iovcnt, const int *fds, unsigned nr_fds,
		    int64_t deadline)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTLMSG_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };

	if (nr_fds) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nr_fds);
	}
	while (msg.msg_iovlen) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int err = neg_errno();

			if (err == -EINTR)
				continue;
			if (err != -EAGAIN)
				return err;
			err = wait_fd(sock, POLLOUT, deadline);
			if (err)
				return err;
			continue;
		}
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
		while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
			n -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int ctlmsg_send(int sock, const json_t *body, const int *fds, unsigned nr_fds, int timeout_ms)
{
	struct ctlmsg_hdr hdr;
	struct iovec iov[2];
	size_t len;
	char *text;
	int err;

	if (nr_fds > CTLMSG_MAX_FDS || !json_is_object(body))
		return nr_fds > CTLMSG_MAX_FDS ? -EMSGSIZE : -EINVAL;
	text = json_dumps(body, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	if (len > CTLMSG_MAX_BODY) {
		free(text);
		return -EMSGSIZE;
	}
	hdr = (struct ctlmsg_hdr){
		.magic = htole32(CTLMSG_MAGIC),
		.version = htole16(CTLMSG_VERSION),
		.nr_fds = htole16((uint16_t)nr_fds),
		.body_bytes = htole32((uint32_t)len),
	};
	iov[0] = (struct iovec){ .iov_base = &hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = text, .iov_len = len };
	err = send_all(sock, iov, 2, fds, nr_fds, deadline_of(timeout_ms));
	free(text);
	return err;
}

/* ---- receiving ---- */

void ctlmsg_reader_init(struct ctlmsg_reader *r)
{
	memset(r, 0, sizeof(*r));
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void ctlmsg_reader_reset(struct ctlmsg_reader *r)
{
	free(r->body);
	close_fds(r->fds, r->nr_fds);
	ctlmsg_reader_init(r);
}

static void reader_take_fds(struct ctlmsg_reader *r, struct msghdr *msg)
{
	struct cmsghdr *c;

	if (msg->msg_flags & MSG_CTRUNC)
		r->fds_lost = true;
	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t n, i;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (r->nr_fds < CTLMSG_MAX_FDS) {
				r->fds[r->nr_fds++] = fd;
			} else {
				close(fd);
				r->fds_lost = true;
			}
		}
	}
}

/* One recvmsg of at most @len bytes into @dst; bytes, 0 at EOF, or -errno. */
static ssize_t reader_recv(struct ctlmsg_reader *r, int sock, void *dst, size_t len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTLMSG_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = dst, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cm.buf,
			      .msg_controllen = sizeof(cm.buf) };
	ssize_t n;

	do {
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return neg_errno();
	reader_take_fds(r, &msg);
	return n;
}

/* The header is complete: to host order, and trustworthy?  0 or -EPROTO. */
static int reader_check_hdr(struct ctlmsg_reader *r)
{
	struct ctlmsg_hdr *h = &r->hdr;

	h->magic = le32toh(h->magic);
	h->version = le16toh(h->version);
	h->nr_fds = le16toh(h->nr_fds);
	h->body_bytes = le32toh(h->body_bytes);
	h->reserved = le32toh(h->reserved);
	if (h->magic != CTLMSG_MAGIC)
		snprintf(r->error, sizeof(r->error), "not a qtap control message (magic 0x%08x)",
			 h->magic);
	else if (h->version != CTLMSG_VERSION)
		snprintf(r->error, sizeof(r->error),
			 "control protocol version %u is not supported (this end speaks %u)",
			 h->version, CTLMSG_VERSION);
	else if (h->reserved)
		snprintf(r->error, sizeof(r->error), "reserved header field is 0x%x, not 0",
			 h->reserved);
	else if (h->body_bytes > CTLMSG_MAX_BODY)
		snprintf(r->error, sizeof(r->error),
			 "message body of %u bytes is over the %u limit", h->body_bytes,
			 CTLMSG_MAX_BODY);
	else if (h->nr_fds > CTLMSG_MAX_FDS)
		snprintf(r->error, sizeof(r->error), "%u fds announced, at most %u", h->nr_fds,
			 CTLMSG_MAX_FDS);
	else
		return 0;
	return -EPROTO;
}

int ctlmsg_reader_read(struct ctlmsg_reader *r, int sock)
{
	for (;;) {
		bool in_hdr = r->hdr_got < sizeof(r->hdr);
		char *dst = in_hdr ? (char *)&r->hdr + r->hdr_got : r->body + r->body_got;
		size_t want =
			in_hdr ? sizeof(r->hdr) - r->hdr_got : r->hdr.body_bytes - r->body_got;
		ssize_t n;

		if (!in_hdr && want == 0)
			return 1;
		n = reader_recv(r, sock, dst, want);
		if (n == -EAGAIN)
			return 0;
		if (n < 0) {
			snprintf(r->error, sizeof(r->error), "receive: %s", err_str((int)n));
			return (int)n;
		}
		if (n == 0) {
			snprintf(r->error, sizeof(r->error), "%s",
				 r->hdr_got ? "peer closed in the middle of a message"
					    : "peer closed");
			return -ECONNRESET;
		}
		if (!in_hdr) {
			r->body_got += (size_t)n;
			continue;
		}
		r->hdr_got += (size_t)n;
		if (r->hdr_got < sizeof(r->hdr))
			continue;
		if (reader_check_hdr(r))
			return -EPROTO;
		r->body = malloc(r->hdr.body_bytes + 1u);
		if (!r->body) {
			snprintf(r->error, sizeof(r->error), "out of memory");
			return -ENOMEM;
		}
	}
}

int ctlmsg_reader_take(struct ctlmsg_reader *r, json_t **body, int *fds, unsigned *nr_fds)
{
	json_error_t jerr;
	json_t *j = NULL;
	int err = 0;

	if (r->fds_lost || r->nr_fds != r->hdr.nr_fds) {
		snprintf(r->error, sizeof(r->error), "%u fds announced, %u%s received",
			 r->hdr.nr_fds, r->nr_fds, r->fds_lost ? " or more" : "");
		err = -EBADMSG;
	}
	if (!err) {
		j = json_loadb(r->body, r->hdr.body_bytes, JSON_REJECT_DUPLICATES, &jerr);
		if (!j)
			snprintf(r->error, sizeof(r->error),
				 "body is not valid JSON: %.100s (column %d)", jerr.text,
				 jerr.column);
		else if (!json_is_object(j))
			snprintf(r->error, sizeof(r->error), "body is not a JSON object");
		if (!json_is_object(j))
			err = -EBADMSG;
	}
	if (err) {
		char why[sizeof(r->error)];

		json_decref(j);
		memcpy(why, r->error, sizeof(why));
		ctlmsg_reader_reset(r);
		memcpy(r->error, why, sizeof(why));
		return err;
	}
	*body = j;
	memcpy(fds, r->fds, sizeof(int) * r->nr_fds);
	*nr_fds = r->nr_fds;
	r->nr_fds = 0;
	ctlmsg_reader_reset(r);
	return 0;
}

int ctlmsg_recv(int sock, json_t **body, int *fds, unsigned *nr_fds, int timeout_ms, char *why,
		size_t why_len)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct ctlmsg_reader r;
	int err;

	*body = NULL;
	*nr_fds = 0;
	ctlmsg_reader_init(&r);
	for (;;) {
		err = ctlmsg_reader_read(&r, sock);
		if (err == 1)
			err = ctlmsg_reader_take(&r, body, fds, nr_fds);
		else if (err == 0)
			err = wait_fd(sock, POLLIN, deadline);
		else
			break;
		if (err || *body)
			break;
	}
	if (err && why && why_len)
		snprintf(why, why_len, "%s", err == -ETIMEDOUT ? "timed out" : r.error);
	ctlmsg_reader_reset(&r);
	return err;
}

/* ---- requests and replies ---- */

/* @obj with @key set to @v (stolen); NULL, with both freed, on failure. */
static json_t *with(json_t *obj, const char *key, json_t *v)
{
	if (!obj) {
		json_decref(v);
		return NULL;
	}
	if (json_object_set_new(obj, key, v)) { /* steals @v, even on failure */
		json_decref(obj);
		return NULL;
	}
	return obj;
}

json_t *ctlmsg_request(const char *cmd, json_t *args)
{
	json_t *o = with(json_object(), "cmd", json_string(cmd));

	return with(o, "args", args ? args : json_object());
}

json_t *ctlmsg_reply_ok(json_t *result)
{
	json_t *o = with(json_object(), "ok", json_true());

	return with(o, "result", result ? result : json_object());
}

const char *ctlmsg_errno_name(int err, char *buf, size_t len)
{
	const char *name = strerrorname_np(err < 0 ? -err : err);

	if (name)
		return name;
	snprintf(buf, len, "E%d", err < 0 ? -err : err);
	return buf;
}

json_t *ctlmsg_reply_error(int err, const char *message)
{
	char name[16];
	int e = err < 0 ? -err : err;
	json_t *o;

	if (e == 0)
		e = EIO;
	o = with(json_object(), "ok", json_false());
	o = with(o, "errno", json_integer(e));
	o = with(o, "error", json_string(ctlmsg_errno_name(e, name, sizeof(name))));
	return with(o, "message", json_string(message && *message ? message : strerror(e)));
}

int ctlmsg_reply_status(const json_t *reply, json_t **result, const char **message)
{
	const json_t *ok = json_object_get(reply, "ok");
	json_int_t e;

	if (result)
		*result = NULL;
	if (message)
		*message = "malformed reply";
	if (!json_is_boolean(ok))
		return -EPROTO;
	if (json_is_true(ok)) {
		if (result)
			*result = json_object_get(reply, "result");
		if (message)
			*message = NULL;
		return 0;
	}
	e = json_integer_value(json_object_get(reply, "errno"));
	if (message && json_is_string(json_object_get(reply, "message")))
		*message = json_string_value(json_object_get(reply, "message"));
	return e > 0 && e < 4096 ? -(int)e : -EPROTO;
}

/* ---- clients ---- */

int ctlmsg_connect(const char *path, int *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = neg_errno();
		close(fd);
		return err;
	}
	*sock = fd;
	return 0;
}

int ctlmsg_call(int sock, const json_t *req, const int *fds, unsigned nr_fds, json_t **reply,
		int timeout_ms)
{
	int got[CTLMSG_MAX_FDS];
	unsigned nr = 0;
	int err;

	err = ctlmsg_send(sock, req, fds, nr_fds, timeout_ms);
	if (err)
		return err;
	err = ctlmsg_recv(sock, reply, got, &nr, timeout_ms, NULL, 0);
	close_fds(got, nr);
	return err;
}
