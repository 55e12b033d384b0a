/* SPDX-License-Identifier: MIT */
/*
 * The control socket server and the command dispatcher.
 *
 * Connections are non-blocking and read through a ctlmsg_reader, so a
 * client that sends half a message holds up nobody; replies are written
 * with a deadline (a client that stops reading is dropped).  A request that
 * cannot be trusted at the framing level (bad magic, version, limits) gets
 * an error reply and the connection is closed, since the stream cannot be
 * resynchronised; a bad body or an unknown command gets an error reply and
 * the connection goes on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "ctl.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"
#include "tapdisk.h"

#define CTL_MAX_CONNS 32
#define CTL_REPLY_TIMEOUT_MS 5000

const struct td_ctl_cmd td_ctl_commands[] = {
#define TD_CTL_COMMAND(name, fn, args, help) { name, fn, args, help },
#include "ctl-commands.def"
#undef TD_CTL_COMMAND
	{ NULL, NULL, NULL, NULL },
};

struct td_ctl_conn {
	struct td_ctl *ctl;
	int fd;
	struct evloop_watch w;
	struct ctlmsg_reader r;
	struct td_ctl_hold *holds;
	struct td_ctl_conn *next;
};

struct td_ctl {
	struct tapdisk *td;
	char *path;
	int fd;
	struct evloop_watch w;
	struct td_ctl_conn *conns;
	unsigned nr_conns;
};

/* ---- handlers' helpers ---- */

int td_ctl_fail(struct td_ctl_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->message, sizeof(call->message), fmt, ap);
	va_end(ap);
	return err;
}

int td_ctl_arg_string(struct td_ctl_call *call, const char *key, bool required, const char **out)
{
	const json_t *v = json_object_get(call->args, key);

	if (!v && !required)
		return 0;
	if (!v)
		return td_ctl_fail(call, -EINVAL, "%s: argument '%s' is required", call->cmd, key);
	if (!json_is_string(v))
		return td_ctl_fail(call, -EINVAL, "%s: argument '%s' must be a string", call->cmd,
				   key);
	*out = json_string_value(v);
	return 0;
}

int td_ctl_arg_u64(struct td_ctl_call *call, const char *key, bool required, uint64_t min,
		   uint64_t max, uint64_t *out)
{
	const json_t *v = json_object_get(call->args, key);
	json_int_t i;

	if (!v && !required)
		return 0;
	if (!v)
		return td_ctl_fail(call, -EINVAL, "%s: argument '%s' is required", call->cmd, key);
	i = json_integer_value(v);
	if (!json_is_integer(v) || i < 0 || (uint64_t)i < min || (uint64_t)i > max)
		return td_ctl_fail(
			call, -EINVAL, "%s: argument '%s' must be an integer from %llu to %llu",
			call->cmd, key, (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)i;
	return 0;
}

int td_ctl_arg_bool(struct td_ctl_call *call, const char *key, bool *out)
{
	const json_t *v = json_object_get(call->args, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return td_ctl_fail(call, -EINVAL, "%s: argument '%s' must be true or false",
				   call->cmd, key);
	*out = json_is_true(v);
	return 0;
}

int td_ctl_take_fd(struct td_ctl_call *call, unsigned index, int *fd)
{
	if (index >= call->nr_fds || call->fds[index] < 0)
		return td_ctl_fail(call, -EBADF, "%s: file descriptor %u was not sent", call->cmd,
				   index);
	*fd = call->fds[index];
	call->fds[index] = -1;
	return 0;
}

/* ---- dispatch ---- */

static const struct td_ctl_cmd *find_cmd(const char *name)
{
	for (const struct td_ctl_cmd *c = td_ctl_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* Is @key one of the comma-separated names in @list? */
static bool arg_listed(const char *list, const char *key)
{
	size_t len = strlen(key);

	for (const char *p = list; *p;) {
		const char *end = strchrnul(p, ',');

		if ((size_t)(end - p) == len && strncmp(p, key, len) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

/* The request's command and arguments, checked; 0 or -errno with the message. */
static int call_parse(struct td_ctl_call *call, const json_t *req, const struct td_ctl_cmd **cmd)
{
	const json_t *name = json_object_get(req, "cmd"), *args = json_object_get(req, "args");
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)req, key, v)
	{
		if (strcmp(key, "cmd") && strcmp(key, "args"))
			return td_ctl_fail(call, -EINVAL, "request: unknown member '%s'", key);
	}
	if (!json_is_string(name))
		return td_ctl_fail(call, -EINVAL, "request: 'cmd' must be a string");
	call->cmd = json_string_value(name);
	*cmd = find_cmd(call->cmd);
	if (!*cmd)
		return td_ctl_fail(call, -EOPNOTSUPP, "unknown command '%s' (try 'help')",
				   call->cmd);
	if (args && !json_is_object(args))
		return td_ctl_fail(call, -EINVAL, "%s: 'args' must be an object", call->cmd);
	call->args = args;
	json_object_foreach((json_t *)args, key, v)
	{
		if (!arg_listed((*cmd)->args, key))
			return td_ctl_fail(call, -EINVAL, "%s: unknown argument '%s'", call->cmd,
					   key);
	}
	return 0;
}

int td_ctl_hold(struct td_ctl_call *call, struct td_ctl_hold *h)
{
	struct td_ctl_conn *c = call->conn;

	if (!c)
		return -ENOTCONN;
	h->next = c->holds;
	if (h->next)
		h->next->pprev = &h->next;
	h->pprev = &c->holds;
	c->holds = h;
	return 0;
}

void td_ctl_release(struct td_ctl_hold *h)
{
	if (!h->pprev)
		return;
	*h->pprev = h->next;
	if (h->next)
		h->next->pprev = h->pprev;
	h->next = NULL;
	h->pprev = NULL;
}

static json_t *dispatch(struct tapdisk *td, struct td_ctl_conn *conn, const json_t *req, int *fds,
			unsigned nr_fds, int *reply_fds, unsigned *nr_reply_fds, bool *quit)
{
	json_t *empty = json_object();
	struct td_ctl_call call = {
		.td = td, .conn = conn, .cmd = "request", .fds = fds, .nr_fds = nr_fds
	};
	const struct td_ctl_cmd *cmd = NULL;
	json_t *reply;
	int err;

	call.args = empty;
	call.result = json_object();
	err = call.result && empty ? call_parse(&call, req, &cmd) : -ENOMEM;
	if (!err) {
		if (!call.args)
			call.args = empty;
		err = cmd->fn(&call);
	}
	for (unsigned i = 0; i < nr_fds; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	if (err) {
		log_dbg(LOG_F_CTL, "control: %s failed: %s", call.cmd,
			call.message[0] ? call.message : err_str(err));
		json_decref(call.result);
		for (unsigned i = 0; i < call.nr_reply_fds; i++)
			close(call.reply_fds[i]);
		*nr_reply_fds = 0;
		*quit = false;
		json_decref(empty);
		return ctlmsg_reply_error(err, call.message);
	}
	memcpy(reply_fds, call.reply_fds, sizeof(int) * call.nr_reply_fds);
	*nr_reply_fds = call.nr_reply_fds;
	*quit = call.quit;
	reply = ctlmsg_reply_ok(call.result);
	json_decref(empty);
	return reply;
}

json_t *td_ctl_dispatch(struct tapdisk *td, const json_t *req, int *fds, unsigned nr_fds,
			int *reply_fds, unsigned *nr_reply_fds, bool *quit)
{
	return dispatch(td, NULL, req, fds, nr_fds, reply_fds, nr_reply_fds, quit);
}

/* ---- connections ---- */

static void conn_close(struct td_ctl_conn *c)
{
	struct td_ctl *ctl = c->ctl;

	for (struct td_ctl_conn **p = &ctl->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	ctl->nr_conns--;
	evloop_watch_del(&c->w);
	ctlmsg_reader_reset(&c->r);
	close(c->fd);
	while (c->holds) {
		struct td_ctl_hold *h = c->holds;

		td_ctl_release(h);
		h->closed(h);
	}
	free(c);
}

/* Send @reply (consumed) with @fds (closed); false when the connection is gone. */
static bool conn_reply(struct td_ctl_conn *c, json_t *reply, int *fds, unsigned nr_fds)
{
	int err = reply ? ctlmsg_send(c->fd, reply, fds, nr_fds, CTL_REPLY_TIMEOUT_MS) : -ENOMEM;

	json_decref(reply);
	for (unsigned i = 0; i < nr_fds; i++)
		close(fds[i]);
	if (err) {
		log_warn("control: reply not sent, dropping the connection: %s", err_str(err));
		conn_close(c);
		return false;
	}
	return true;
}

/* One complete message: run it and answer.  false when the connection is gone. */
static bool conn_request(struct td_ctl_conn *c)
{
	int fds[CTLMSG_MAX_FDS], reply_fds[CTLMSG_MAX_FDS];
	unsigned nr_fds = 0, nr_reply_fds = 0;
	struct tapdisk *td = c->ctl->td;
	bool quit = false;
	json_t *req = NULL, *reply;
	int err;

	err = ctlmsg_reader_take(&c->r, &req, fds, &nr_fds);
	if (err) {
		log_warn("control: malformed request: %s", c->r.error);
		return conn_reply(c, ctlmsg_reply_error(err, c->r.error), NULL, 0);
	}
	reply = dispatch(td, c, req, fds, nr_fds, reply_fds, &nr_reply_fds, &quit);
	json_decref(req);
	if (!conn_reply(c, reply, reply_fds, nr_reply_fds))
		return false;
	if (quit)
		tapdisk_request_quit(td);
	return true;
}

static void conn_readable(struct evloop_watch *w, uint32_t events)
{
	struct td_ctl_conn *c = w->opaque;

	for (;;) {
		int rc = ctlmsg_reader_read(&c->r, c->fd);

		if (rc == 0)
			return;
		if (rc == 1) {
			if (!conn_request(c))
				return;
			continue;
		}
		if (rc == -EPROTO) {
			log_warn("control: %s; closing the connection", c->r.error);
			/* tell the peer why, then drop it: the stream is lost */
			if (conn_reply(c, ctlmsg_reply_error(rc, c->r.error), NULL, 0))
				conn_close(c);
			return;
		}
		if (rc != -ECONNRESET || c->r.hdr_got)
			log_dbg(LOG_F_CTL, "control: connection closed: %s", c->r.error);
		conn_close(c);
		return;
	}
}

static void ctl_accept(struct evloop_watch *w, uint32_t events)
{
	struct td_ctl *ctl = w->opaque;
	struct td_ctl_conn *c;
	int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("control: accept on %s: %m", ctl->path);
		return;
	}
	if (ctl->nr_conns >= CTL_MAX_CONNS) {
		json_t *r = ctlmsg_reply_error(-EMFILE, "too many control connections");

		log_warn("control: %u connections already, refusing another", ctl->nr_conns);
		if (r)
			ctlmsg_send(fd, r, NULL, 0, 0);
		json_decref(r);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	ctlmsg_reader_init(&c->r);
	c->w = (struct evloop_watch){
		.fd = fd, .events = EPOLLIN, .fn = conn_readable, .opaque = c
	};
	if (evloop_watch_add(ctl->td->loop, &c->w)) {
		close(fd);
		free(c);
		return;
	}
	c->next = ctl->conns;
	ctl->conns = c;
	ctl->nr_conns++;
}

/* ---- the listening socket ---- */

/* A socket file at @path already: stale (removed, 0), or in use (-EADDRINUSE). */
static int clear_stale(const char *path)
{
	struct stat st;
	int fd, err;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : neg_errno();
	if (!S_ISSOCK(st.st_mode)) {
		log_err("control socket %s: exists and is not a socket", path);
		return -EEXIST;
	}
	err = ctlmsg_connect(path, &fd);
	if (!err) {
		close(fd);
		log_err("control socket %s: another process is serving it", path);
		return -EADDRINUSE;
	}
	if (err != -ECONNREFUSED) {
		log_err("control socket %s: %s", path, err_str(err));
		return err;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return neg_errno();
	return 0;
}

static int ctl_bind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("control socket %s: path longer than %zu bytes", path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	err = clear_stale(path);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	old = umask(0177); /* the socket is created 0600 */
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? neg_errno() : 0;
	umask(old);
	if (!err && listen(fd, 16) < 0)
		err = neg_errno();
	if (err) {
		log_err("control socket %s: %s", path, err_str(err));
		close(fd);
		return err;
	}
	return fd;
}

int td_ctl_listen(struct tapdisk *td, const char *path, struct td_ctl **out)
{
	struct td_ctl *ctl = calloc(1, sizeof(*ctl));
	int err;

	if (!ctl)
		return -ENOMEM;
	ctl->td = td;
	ctl->path = strdup(path);
	ctl->fd = ctl->path ? ctl_bind(path) : -ENOMEM;
	if (ctl->fd < 0) {
		err = ctl->fd;
		free(ctl->path);
		free(ctl);
		return err;
	}
	ctl->w = (struct evloop_watch){
		.fd = ctl->fd, .events = EPOLLIN, .fn = ctl_accept, .opaque = ctl
	};
	err = evloop_watch_add(td->loop, &ctl->w);
	if (err) {
		ctl->w.active = false;
		td_ctl_free(ctl);
		return err;
	}
	*out = ctl;
	return 0;
}

void td_ctl_free(struct td_ctl *ctl)
{
	if (!ctl)
		return;
	while (ctl->conns)
		conn_close(ctl->conns);
	evloop_watch_del(&ctl->w);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
