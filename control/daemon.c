/* SPDX-License-Identifier: MIT */
/*
 * tapctld's control socket: accept, read one request (bounded in size and
 * time, without blocking the loop), run the command, send the reply, close.
 * Only root or the daemon's own user may talk to it (SO_PEERCRED), on top
 * of the socket's mode 0600.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "ctlproto.h"
#include "errors.h"
#include "log.h"
#include "tapctld.h"

#define REQUEST_TIMEOUT_NS (10 * 1000000000ull)

struct conn {
	struct tcd *t;
	int fd;
	struct evloop_watch watch;
	struct evloop_timer timer;
	struct ctlmsg_reader reader;
};

static void conn_free(struct conn *c)
{
	evloop_watch_del(&c->watch);
	evloop_timer_cancel(&c->timer);
	ctlmsg_reader_reset(&c->reader);
	close(c->fd);
	free(c);
}

static void conn_reply(struct conn *c, json_t *reply)
{
	if (!reply)
		reply = ctlp_error(-ENOMEM, "out of memory");
	if (reply && ctlmsg_send(c->fd, reply, NULL, 0, 5000) < 0)
		log_dbg(LOG_F_CTL, "control: a client left before its reply");
	json_decref(reply);
	conn_free(c);
}

static void on_conn_readable(struct evloop_watch *w, uint32_t events)
{
	struct conn *c = w->opaque;
	int fds[CTLMSG_MAX_FDS];
	unsigned nr_fds = 0, i;
	json_t *req = NULL;
	int rc = ctlmsg_reader_read(&c->reader, c->fd);

	if (rc == 0 || rc == -EAGAIN || rc == -EINTR)
		return;
	if (rc == -EPROTO)
		return conn_reply(c, ctlp_error(rc,
						"%s (tapctld speaks control protocol "
						"version %u)",
						c->reader.error, CTLMSG_VERSION));
	if (rc < 0)
		return conn_free(c);
	rc = ctlmsg_reader_take(&c->reader, &req, fds, &nr_fds);
	if (rc == 0) {
		conn_reply(c, tcd_command(c->t, req, fds, nr_fds));
		json_decref(req);
	} else {
		conn_reply(c, ctlp_error(rc, "%s", c->reader.error));
	}
	for (i = 0; i < nr_fds; i++)
		close(fds[i]);
}

static void on_conn_timeout(struct evloop_timer *tm)
{
	struct conn *c = tm->opaque;

	log_warn("control: a client sent no complete request within 10 s; dropped");
	conn_free(c);
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == getuid();
}

static void on_accept(struct evloop_watch *w, uint32_t events)
{
	struct tcd *t = w->opaque;
	struct conn *c;
	int fd = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->t = t;
	c->fd = fd;
	ctlmsg_reader_init(&c->reader);
	if (!peer_allowed(fd))
		return conn_reply(c, ctlp_error(-EACCES, "only root or the daemon's user may "
							 "control tapctld"));
	c->watch = (struct evloop_watch){
		.fd = fd, .events = EPOLLIN, .fn = on_conn_readable, .opaque = c
	};
	evloop_timer_init(&c->timer, on_conn_timeout, c);
	if (evloop_watch_add(t->loop, &c->watch) < 0) {
		conn_free(c);
		return;
	}
	evloop_timer_arm(t->loop, &c->timer, REQUEST_TIMEOUT_NS, 0);
}

/* Is a daemon answering at @path?  A stale socket file is not one. */
static bool socket_alive(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return alive;
}

int tcd_listen(struct tcd *t)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = t->opts.sock_path;
	char dir[sizeof(sa.sun_path)];
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("control socket path is too long (%zu bytes, at most %zu): %s",
			strlen(path), sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	memcpy(dir, path, strlen(path) + 1);
	if (mkdir(dirname(dir), 0755) < 0 && errno != EEXIST)
		log_warn("cannot create the socket's directory %s: %m", dir);
	if (socket_alive(&sa)) {
		log_err("another tapctld is answering on %s", path);
		return -EADDRINUSE;
	}
	unlink(path);
	t->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (t->listen_fd < 0)
		return neg_errno();
	if (bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(t->listen_fd, 64) < 0) {
		rc = neg_errno();
		log_err("control socket %s: %s", path, err_str(rc));
		close(t->listen_fd);
		t->listen_fd = -1;
		return rc;
	}
	t->listen_watch = (struct evloop_watch){
		.fd = t->listen_fd, .events = EPOLLIN, .fn = on_accept, .opaque = t
	};
	return evloop_watch_add(t->loop, &t->listen_watch);
}

void tcd_unlisten(struct tcd *t)
{
	if (t->listen_fd < 0)
		return;
	evloop_watch_del(&t->listen_watch);
	close(t->listen_fd);
	t->listen_fd = -1;
	unlink(t->opts.sock_path);
}
