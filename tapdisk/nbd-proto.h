/* SPDX-License-Identifier: MIT */
/*
 * The NBD protocol as qtap's server speaks it: wire constants and the pure
 * (socket-free, allocation-free on the request path) halves of the server,
 * so that option haggling, request checks and reply building are unit
 * tested on buffers.  The reference is the NBD project's doc/proto.md;
 * the names below are the document's with NBDP_ for NBD_ (libnbd and the
 * kernel's linux/nbd.h own the NBD_ and nbd_ names).
 *
 * What the server implements (fixed newstyle only, no TLS):
 *   options   EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
 *             LIST_META_CONTEXT, SET_META_CONTEXT; STARTTLS and anything
 *             else get NBD_REP_ERR_UNSUP.
 *   contexts  base:allocation, qemu:allocation-depth and
 *             qemu:dirty-bitmap:NAME for each persistent bitmap exported.
 *   commands  READ (structured replies with OFFSET_HOLE), WRITE, DISC,
 *             FLUSH, TRIM, CACHE, WRITE_ZEROES (NO_HOLE, FAST_ZERO),
 *             BLOCK_STATUS (REQ_ONE); FUA on every write-type command.
 *
 * Everything a client sends is untrusted: lengths are checked before they
 * are used, and a violation is answered with the protocol's error, or with
 * a hard disconnect where the stream can no longer be parsed.
 */
#ifndef QTAP_TAPDISK_NBD_PROTO_H
#define QTAP_TAPDISK_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "byteorder.h"

/* ---- wire constants (doc/proto.md) ------------------------------------- */

#define NBDP_MAGIC 0x4e42444d41474943ull      /* "NBDMAGIC" */
#define NBDP_OPTS_MAGIC 0x49484156454f5054ull /* "IHAVEOPT" */
#define NBDP_REP_MAGIC 0x3e889045565a9ull     /* option replies */
#define NBDP_REQUEST_MAGIC 0x25609513u	      /* transmission requests */
#define NBDP_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBDP_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* Handshake flags (server) and client flags. */
#define NBDP_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBDP_FLAG_NO_ZEROES (1u << 1)
#define NBDP_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBDP_FLAG_C_NO_ZEROES (1u << 1)

/* Transmission flags. */
#define NBDP_FLAG_HAS_FLAGS (1u << 0)
#define NBDP_FLAG_READ_ONLY (1u << 1)
#define NBDP_FLAG_SEND_FLUSH (1u << 2)
#define NBDP_FLAG_SEND_FUA (1u << 3)
#define NBDP_FLAG_ROTATIONAL (1u << 4)
#define NBDP_FLAG_SEND_TRIM (1u << 5)
#define NBDP_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBDP_FLAG_SEND_DF (1u << 7)
#define NBDP_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBDP_FLAG_SEND_RESIZE (1u << 9)
#define NBDP_FLAG_SEND_CACHE (1u << 10)
#define NBDP_FLAG_SEND_FAST_ZERO (1u << 11)

/* Options. */
#define NBDP_OPT_EXPORT_NAME 1u
#define NBDP_OPT_ABORT 2u
#define NBDP_OPT_LIST 3u
#define NBDP_OPT_STARTTLS 5u
#define NBDP_OPT_INFO 6u
#define NBDP_OPT_GO 7u
#define NBDP_OPT_STRUCTURED_REPLY 8u
#define NBDP_OPT_LIST_META_CONTEXT 9u
#define NBDP_OPT_SET_META_CONTEXT 10u

/* Option replies. */
#define NBDP_REP_ACK 1u
#define NBDP_REP_SERVER 2u
#define NBDP_REP_INFO 3u
#define NBDP_REP_META_CONTEXT 4u
#define NBDP_REP_ERR_UNSUP (0x80000000u + 1)
#define NBDP_REP_ERR_POLICY (0x80000000u + 2)
#define NBDP_REP_ERR_INVALID (0x80000000u + 3)
#define NBDP_REP_ERR_UNKNOWN (0x80000000u + 6)
#define NBDP_REP_ERR_SHUTDOWN (0x80000000u + 7)
#define NBDP_REP_ERR_TOO_BIG (0x80000000u + 9)

/* NBD_OPT_INFO / NBD_OPT_GO information types. */
#define NBDP_INFO_EXPORT 0u
#define NBDP_INFO_NAME 1u
#define NBDP_INFO_DESCRIPTION 2u
#define NBDP_INFO_BLOCK_SIZE 3u

/* Commands. */
#define NBDP_CMD_READ 0u
#define NBDP_CMD_WRITE 1u
#define NBDP_CMD_DISC 2u
#define NBDP_CMD_FLUSH 3u
#define NBDP_CMD_TRIM 4u
#define NBDP_CMD_CACHE 5u
#define NBDP_CMD_WRITE_ZEROES 6u
#define NBDP_CMD_BLOCK_STATUS 7u

/* Command flags. */
#define NBDP_CMD_FLAG_FUA (1u << 0)
#define NBDP_CMD_FLAG_NO_HOLE (1u << 1)
#define NBDP_CMD_FLAG_DF (1u << 2)
#define NBDP_CMD_FLAG_REQ_ONE (1u << 3)
#define NBDP_CMD_FLAG_FAST_ZERO (1u << 4)

/* Structured reply flags and chunk types. */
#define NBDP_REPLY_FLAG_DONE (1u << 0)
#define NBDP_REPLY_TYPE_NONE 0u
#define NBDP_REPLY_TYPE_OFFSET_DATA 1u
#define NBDP_REPLY_TYPE_OFFSET_HOLE 2u
#define NBDP_REPLY_TYPE_BLOCK_STATUS 5u
#define NBDP_REPLY_TYPE_ERROR 0x8001u
#define NBDP_REPLY_TYPE_ERROR_OFFSET 0x8002u

/* Error values on the wire (not host errnos, though they mostly agree). */
#define NBDP_EPERM 1u
#define NBDP_EIO 5u
#define NBDP_ENOMEM 12u
#define NBDP_EINVAL 22u
#define NBDP_ENOSPC 28u
#define NBDP_EOVERFLOW 75u
#define NBDP_ENOTSUP 95u
#define NBDP_ESHUTDOWN 108u

/* base:allocation flags. */
#define NBDP_STATE_HOLE (1u << 0)
#define NBDP_STATE_ZERO (1u << 1)
/* qemu:dirty-bitmap:NAME flag. */
#define NBDP_STATE_DIRTY (1u << 0)

/* ---- sizes ------------------------------------------------------------- */

#define NBDP_GREETING_BYTES 18u	    /* NBDMAGIC, IHAVEOPT, handshake flags */
#define NBDP_OPT_HDR_BYTES 16u	    /* IHAVEOPT, option, length */
#define NBDP_REP_HDR_BYTES 20u	    /* magic, option, type, length */
#define NBDP_REQUEST_BYTES 28u	    /* magic, flags, type, cookie, offset, length */
#define NBDP_SIMPLE_REPLY_BYTES 16u /* magic, error, cookie */
#define NBDP_CHUNK_HDR_BYTES 20u    /* magic, flags, type, cookie, length */
#define NBDP_STRING_MAX 4096u	    /* longest export name or query string */
#define NBDP_OPT_MAX_BYTES 65536u   /* longer option data is refused (TOO_BIG) */
#define NBDP_EXPORT_NAME_ZEROES 124u
#define NBDP_MAX_BLOCK_BYTES (32u << 20) /* largest READ/WRITE we accept */

/* Context ids: fixed, so a connection's selection is a few bits. */
#define NBDP_CTX_BASE_ALLOCATION 1u
#define NBDP_CTX_ALLOCATION_DEPTH 2u
#define NBDP_CTX_BITMAP0 3u /* + index in nbdp_export.bitmaps */
#define NBDP_MAX_BITMAPS 64u

/* ---- the export, as the handshake advertises it ------------------------ */

struct nbdp_export {
	const char *name;	 /* NBD_OPT_EXPORT_NAME/GO name; "" also selects it */
	const char *description; /* NULL: none */
	uint64_t size_bytes;
	bool readonly;
	bool can_trim;
	bool can_zero;
	bool can_fast_zero;
	uint32_t min_block;  /* 1: any byte range is served */
	uint32_t pref_block; /* power of two */
	uint32_t max_block;  /* largest READ/WRITE payload */
	/* qemu:dirty-bitmap:NAME contexts, at most NBDP_MAX_BITMAPS */
	const char *const *bitmaps;
	unsigned nr_bitmaps;
};

/* nbdp_tx_flags - the transmission flags for @e, given structured replies. */
uint16_t nbdp_tx_flags(const struct nbdp_export *e, bool structured);

/* ---- option haggling (nbd-opts.c) -------------------------------------- */

/* What one connection negotiated. */
struct nbdp_session {
	bool no_zeroes;	  /* NBD_FLAG_C_NO_ZEROES */
	bool structured;  /* NBD_OPT_STRUCTURED_REPLY acked */
	bool base;	  /* base:allocation selected */
	bool depth;	  /* qemu:allocation-depth selected */
	uint64_t bitmaps; /* bit i: qemu:dirty-bitmap:bitmaps[i] selected */
};

/* A growable byte buffer for option replies (handshake only). */
struct nbdp_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void nbdp_buf_free(struct nbdp_buf *b);
int nbdp_buf_put(struct nbdp_buf *b, const void *data, size_t len);

enum nbdp_opt_next {
	NBDP_NEXT_OPTION,   /* send the replies, read the next option */
	NBDP_NEXT_TRANSMIT, /* send the replies, then the transmission phase */
	NBDP_NEXT_CLOSE,    /* send the replies (if any), then close */
};

/*
 * nbdp_greeting - the server's first 18 bytes into @out.
 */
void nbdp_greeting(uint8_t out[NBDP_GREETING_BYTES]);

/*
 * nbdp_client_flags - check the client's 32-bit flags word.  Returns 0 and
 * records NO_ZEROES in @s, or -EPROTO for a flag the server did not offer
 * (the server then closes, as the protocol requires).
 */
int nbdp_client_flags(struct nbdp_session *s, uint32_t flags);

/*
 * nbdp_opt_handle - answer one option (@opt with @len bytes of @data; the
 * caller has refused or discarded data longer than NBDP_OPT_MAX_BYTES with
 * nbdp_opt_too_big).  Appends the replies to @out and says what comes
 * next.  Returns 0, or -ENOMEM (the connection is then closed).
 */
int nbdp_opt_handle(struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		    const uint8_t *data, uint32_t len, struct nbdp_buf *out,
		    enum nbdp_opt_next *next);

/* nbdp_name_matches - does @name (@len bytes) select @e?  "" always does. */
bool nbdp_name_matches(const struct nbdp_export *e, const uint8_t *name, uint32_t len);

/* nbdp_rep_hdr - an option reply header (@len bytes of data follow). */
int nbdp_rep_hdr(struct nbdp_buf *out, uint32_t opt, uint32_t type, uint32_t len);

/* nbdp_rep_err - an error reply of @type with a message for the user. */
int nbdp_rep_err(struct nbdp_buf *out, uint32_t opt, uint32_t type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* nbdp_opt_too_big - the reply to an option whose data was discarded. */
int nbdp_opt_too_big(uint32_t opt, struct nbdp_buf *out);

/* ---- meta contexts (nbd-meta.c) ---------------------------------------- */

/*
 * nbdp_meta_reply - answer NBD_OPT_LIST_META_CONTEXT or
 * NBD_OPT_SET_META_CONTEXT (@opt) with @data; SET replaces the selection
 * in @s.  Returns 0 or -ENOMEM.
 */
int nbdp_meta_reply(struct nbdp_session *s, const struct nbdp_export *e, uint32_t opt,
		    const uint8_t *data, uint32_t len, struct nbdp_buf *out);

/* nbdp_meta_count - how many contexts @s selected. */
unsigned nbdp_meta_count(const struct nbdp_session *s);

/* ---- transmission: requests and replies (nbd-cmd.c) -------------------- */

struct nbdp_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t len;
};

/*
 * nbdp_request_decode - parse a request header.  Returns 0, or -EPROTO for
 * a bad magic (the stream cannot be trusted any more: hard disconnect).
 */
int nbdp_request_decode(const uint8_t hdr[NBDP_REQUEST_BYTES], struct nbdp_request *r);

/*
 * nbdp_request_check - is @r valid on this session and export?  Returns 0
 * or the NBD error to reply with (NBDP_EINVAL, NBDP_EPERM, NBDP_ENOSPC,
 * NBDP_EOVERFLOW).  A WRITE's payload must still be consumed whatever the
 * verdict, except that a WRITE longer than e->max_block (*disconnect) is
 * not worth reading: the caller hangs up.
 */
uint32_t nbdp_request_check(const struct nbdp_session *s, const struct nbdp_export *e,
			    const struct nbdp_request *r, bool *disconnect);

/* nbdp_errno - the NBD error value for a qtap 0/-errno result. */
uint32_t nbdp_errno(int err);

/* nbdp_simple_reply - a simple reply header into @out. */
void nbdp_simple_reply(uint8_t out[NBDP_SIMPLE_REPLY_BYTES], uint32_t error, uint64_t cookie);

/* nbdp_chunk_hdr - a structured reply chunk header into @out. */
void nbdp_chunk_hdr(uint8_t out[NBDP_CHUNK_HDR_BYTES], uint16_t flags, uint16_t type,
		    uint64_t cookie, uint32_t payload_len);

/*
 * nbdp_error_chunk - a complete NBD_REPLY_TYPE_ERROR chunk (DONE) with
 * @msg (truncated to fit) into @out of @cap bytes.  Returns its length.
 */
size_t nbdp_error_chunk(uint8_t *out, size_t cap, uint64_t cookie, uint32_t error, const char *msg);

/*
 * Sparse reads: a read's data split into runs of data and runs of zeros
 * at @grain (a power of two) boundaries of the disk, for OFFSET_DATA and
 * OFFSET_HOLE chunks.  At most @max runs; the last run takes whatever
 * remains.  Returns the number of runs (>= 1 for @len > 0).
 */
struct nbdp_run {
	uint32_t off; /* from the start of the buffer */
	uint32_t len;
	bool zero;
};
unsigned nbdp_read_runs(const uint8_t *buf, uint64_t disk_offset, uint32_t len, uint32_t grain,
			struct nbdp_run *runs, unsigned max);

/*
 * Block status descriptors: callers append (length, flags) pairs in order;
 * adjacent pairs with the same flags merge.  @desc holds room for @max
 * descriptors (8 bytes each, wire order); nbdp_bs_add returns false once
 * a new descriptor would not fit (the pair is then not recorded).
 */
struct nbdp_bs {
	uint8_t *desc;
	unsigned nr;
	unsigned max;
	uint32_t last_flags;
	uint64_t covered; /* sum of lengths */
};
void nbdp_bs_init(struct nbdp_bs *bs, uint8_t *desc, unsigned max);
bool nbdp_bs_add(struct nbdp_bs *bs, uint32_t len, uint32_t flags);

#endif
