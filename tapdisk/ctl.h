/* SPDX-License-Identifier: MIT */
/*
 * tapdisk's control socket: a unix socket speaking lib/ctlmsg framing
 * (docs/control-protocol.md), served on the control thread's event loop.
 *
 * Commands are one table, tapdisk/ctl-commands.def, one line each:
 *
 *	TD_CTL_COMMAND("name", handler, "arg1,arg2", "one line of help")
 *
 * The handler (any file; its prototype comes from this header) gets the
 * request's arguments, already checked to be among the names listed, and
 * the fds that came with it; it fills call->result and returns 0, or
 * returns td_ctl_fail(call, -errno, "what went wrong") and the client gets
 * an error reply with that message.  Handlers run on the control thread
 * and may block (pause does).
 */
#ifndef QTAP_TAPDISK_CTL_H
#define QTAP_TAPDISK_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctlmsg.h"

struct tapdisk;
struct td_ctl;

struct td_ctl_conn;

struct td_ctl_call {
	struct tapdisk *td;
	struct td_ctl_conn *conn; /* the connection it came on; NULL in tests */
	const char *cmd;
	const json_t *args; /* an object */
	int *fds;	    /* received with the request; a handler keeping one
			     * takes it with td_ctl_take_fd; the rest are closed */
	unsigned nr_fds;
	json_t *result;		       /* the reply's "result" object */
	int reply_fds[CTLMSG_MAX_FDS]; /* sent with the reply, then closed */
	unsigned nr_reply_fds;
	bool quit;	   /* leave the event loop after replying */
	char message[256]; /* td_ctl_fail's */
};

typedef int td_ctl_fn(struct td_ctl_call *call);

/* Every handler's prototype, from the table. */
#define TD_CTL_COMMAND(name, fn, args, help) td_ctl_fn fn;
#include "ctl-commands.def"
#undef TD_CTL_COMMAND

struct td_ctl_cmd {
	const char *name;
	td_ctl_fn *fn;
	const char *args; /* comma-separated names the command accepts */
	const char *help;
};

/* The table, NULL-terminated. */
extern const struct td_ctl_cmd td_ctl_commands[];

/*
 * td_ctl_listen - serve @path (mode 0600) on @td->loop.  A stale socket
 * left by a dead process is replaced; one a live process answers on is
 * -EADDRINUSE.  0 or -errno (logged).
 */
int td_ctl_listen(struct tapdisk *td, const char *path, struct td_ctl **out);

/* td_ctl_free - close every connection and remove the socket.  NULL ok. */
void td_ctl_free(struct td_ctl *ctl);

/*
 * td_ctl_dispatch - run one request (for the server, and tests): the reply,
 * never NULL unless out of memory.  Takes the fds (closes what the handler
 * did not keep).  Reply fds go to *@reply_fds (CTLMSG_MAX_FDS), the caller
 * closes them; *@quit when the process should leave its loop.
 */
json_t *td_ctl_dispatch(struct tapdisk *td, const json_t *req, int *fds, unsigned nr_fds,
			int *reply_fds, unsigned *nr_reply_fds, bool *quit);

/*
 * A hold on the connection a request came on: @closed runs on the control
 * thread when that connection closes (the peer went away), unless
 * td_ctl_release came first.  It is released before @closed runs, so
 * @closed may free it.
 */
struct td_ctl_hold {
	void (*closed)(struct td_ctl_hold *h);
	void *opaque;
	struct td_ctl_hold *next, **pprev;
};

/* td_ctl_hold - hold @call's connection: 0, or -ENOTCONN (a request from no connection). */
int td_ctl_hold(struct td_ctl_call *call, struct td_ctl_hold *h);

/* td_ctl_release - let go of a hold; a hold never taken or already let go is a no-op. */
void td_ctl_release(struct td_ctl_hold *h);

/* td_ctl_fail - set the error message; returns @err for `return td_ctl_fail(...)`. */
int td_ctl_fail(struct td_ctl_call *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Argument getters: a missing optional argument leaves *out alone and
 * returns 0; a missing required one or one of the wrong type or range is
 * -EINVAL with the message set.
 */
int td_ctl_arg_string(struct td_ctl_call *call, const char *key, bool required, const char **out);
int td_ctl_arg_u64(struct td_ctl_call *call, const char *key, bool required, uint64_t min,
		   uint64_t max, uint64_t *out);
int td_ctl_arg_bool(struct td_ctl_call *call, const char *key, bool *out);

/* td_ctl_take_fd - own received fd @index (-EBADF, message set, if absent). */
int td_ctl_take_fd(struct td_ctl_call *call, unsigned index, int *fd);

#endif
