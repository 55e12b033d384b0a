/* SPDX-License-Identifier: MIT */
/*
 * Control messages: the framing every qtap control socket speaks (each
 * tapdisk's, tapctld's), specified in docs/control-protocol.md.
 *
 * A message is a 16-byte header, then a JSON object of body_bytes bytes.
 * File descriptors travel as SCM_RIGHTS ancillary data sent with the
 * message's bytes; the header says how many, so a receiver can tell fds
 * that went missing.  All header fields are little-endian.  The magic and
 * the version sit at fixed offsets forever, so that any two ends can tell
 * each other's version apart and say so.
 *
 * Requests are {"cmd": NAME, "args": {...}}; replies are
 * {"ok": true, "result": {...}} or
 * {"ok": false, "errno": N, "error": "ENAME", "message": "..."}.
 *
 * Two ways to receive: ctlmsg_recv() blocks (clients), a ctlmsg_reader is
 * fed from an event loop whenever the socket is readable (servers).  The
 * peer is untrusted: a bad header is reported, not trusted.
 */
#ifndef QTAP_CTLMSG_H
#define QTAP_CTLMSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTLMSG_MAGIC 0x4d435451u /* the bytes "QTCM" */
#define CTLMSG_VERSION 1u
#define CTLMSG_MAX_BODY (1u << 20)
#define CTLMSG_MAX_FDS 16u
#define CTLMSG_TIMEOUT_MS 10000 /* default for the blocking helpers */

struct ctlmsg_hdr {
	uint32_t magic;	     /* CTLMSG_MAGIC */
	uint16_t version;    /* CTLMSG_VERSION */
	uint16_t nr_fds;     /* fds sent with this message, <= CTLMSG_MAX_FDS */
	uint32_t body_bytes; /* the JSON body that follows, <= CTLMSG_MAX_BODY */
	uint32_t reserved;   /* 0 */
};

_Static_assert(sizeof(struct ctlmsg_hdr) == 16, "control header is 16 bytes");
_Static_assert(offsetof(struct ctlmsg_hdr, magic) == 0, "magic at 0");
_Static_assert(offsetof(struct ctlmsg_hdr, version) == 4, "version at 4");
_Static_assert(offsetof(struct ctlmsg_hdr, nr_fds) == 6, "nr_fds at 6");
_Static_assert(offsetof(struct ctlmsg_hdr, body_bytes) == 8, "body_bytes at 8");
_Static_assert(offsetof(struct ctlmsg_hdr, reserved) == 12, "reserved at 12");

/*
 * ctlmsg_send - send @body (a JSON object) and @nr_fds fds on @sock, waiting
 * at most @timeout_ms (-1: forever) for room.  The fds stay the caller's.
 * 0, -EMSGSIZE (body too large, too many fds), -ETIMEDOUT, or -errno.
 */
int ctlmsg_send(int sock, const json_t *body, const int *fds, unsigned nr_fds, int timeout_ms);

/* Receiving, incrementally. */
struct ctlmsg_reader {
	struct ctlmsg_hdr hdr; /* host order once complete */
	size_t hdr_got;
	char *body;
	size_t body_got;
	int fds[CTLMSG_MAX_FDS];
	unsigned nr_fds;
	bool fds_lost;	 /* more fds than fit, or truncated ancillary data */
	char error[160]; /* why the last read or take failed */
};

void ctlmsg_reader_init(struct ctlmsg_reader *r);

/* ctlmsg_reader_reset - drop a partial message: free the body, close fds. */
void ctlmsg_reader_reset(struct ctlmsg_reader *r);

/*
 * ctlmsg_reader_read - read what @sock has now, never past the current
 * message.  1: a whole message is ready (ctlmsg_reader_take); 0: more is
 * needed; -ECONNRESET: the peer closed (cleanly between messages, or not);
 * -EPROTO: a header that cannot be trusted (bad magic, unknown version,
 * reserved bits, body or fd count over the limits; r->error says which,
 * and the stream cannot be resynchronised); -errno from recvmsg.
 */
int ctlmsg_reader_read(struct ctlmsg_reader *r, int sock);

/*
 * ctlmsg_reader_take - the complete message: *@body (a new reference to an
 * object) and its fds (ownership passes; at most CTLMSG_MAX_FDS).  The
 * reader is reset for the next message either way.  0, or -EBADMSG (the
 * body is not a JSON object, or the fds received do not match the header;
 * r->error says which; the stream stays in step).
 */
int ctlmsg_reader_take(struct ctlmsg_reader *r, json_t **body, int *fds, unsigned *nr_fds);

/*
 * ctlmsg_recv - block for one whole message, at most @timeout_ms (-1:
 * forever).  As read and take; -ETIMEDOUT.  @why (may be NULL, @why_len
 * bytes) receives the reader's error text.
 */
int ctlmsg_recv(int sock, json_t **body, int *fds, unsigned *nr_fds, int timeout_ms, char *why,
		size_t why_len);

/* ---- requests and replies ---- */

/* ctlmsg_request - {"cmd": @cmd, "args": @args} (@args stolen; NULL: {}). */
json_t *ctlmsg_request(const char *cmd, json_t *args);

/* ctlmsg_reply_ok - {"ok": true, "result": @result} (stolen; NULL: {}). */
json_t *ctlmsg_reply_ok(json_t *result);

/* ctlmsg_reply_error - {"ok": false, "errno", "error", "message"}. */
json_t *ctlmsg_reply_error(int err, const char *message);

/*
 * ctlmsg_reply_status - 0 for an ok reply (*@result borrowed from @reply),
 * else the reply's -errno (-EPROTO for a malformed reply) with *@message
 * borrowed from it.  Either out pointer may be NULL.
 */
int ctlmsg_reply_status(const json_t *reply, json_t **result, const char **message);

/* ---- clients ---- */

/* ctlmsg_connect - connect to the unix socket at @path.  0 or -errno. */
int ctlmsg_connect(const char *path, int *sock);

/*
 * ctlmsg_call - send @req (with fds) and wait for its reply (fds sent back
 * are closed).  0 and *@reply, or -errno of the exchange itself (a
 * refused command is an ok exchange: see ctlmsg_reply_status).
 */
int ctlmsg_call(int sock, const json_t *req, const int *fds, unsigned nr_fds, json_t **reply,
		int timeout_ms);

/* ctlmsg_errno_name - "EINVAL" for -EINVAL (or EINVAL); "E<n>" if unknown. */
const char *ctlmsg_errno_name(int err, char *buf, size_t len);

#endif
