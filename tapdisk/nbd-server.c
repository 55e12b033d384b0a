// SPDX-License-Identifier: MIT
/*
 * The NBD server: the export, its listeners, the per-queue contexts, and
 * an orderly stop.
 *
 * Listening sockets are watched on queue 0's loop; an accepted connection
 * is handed to the next queue in turn and lives there from its handshake
 * to its close, so a connection's requests never cross threads.  Every
 * queue runs a prepare hook that sends the replies completed during the
 * last loop iteration, one sendmsg() per connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "checked.h"
#include "cleanup.h"
#include "errors.h"
#include "log.h"
#include "tapdisk/nbd-internal.h"

/* ---- accepting ------------------------------------------------------------ */

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "unix");
	}
}

/* Count a new connection in, unless the server is full or stopping. */
static bool conn_admit(struct nbds_server *srv)
{
	bool ok;

	pthread_mutex_lock(&srv->lock);
	ok = !srv->stopping && srv->nr_conns < srv->max_conns;
	if (ok)
		srv->nr_conns++;
	pthread_mutex_unlock(&srv->lock);
	return ok;
}

static void on_accept(struct evloop_watch *w, uint32_t events)
{
	struct nbds_listener *l = w->opaque;
	struct sockaddr_storage ss;
	socklen_t sl;
	char peer[64];
	unsigned i;
	int fd, one = 1, sndbuf = NBDS_UNIX_SNDBUF_BYTES;

	for (i = 0; i < 16; i++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 &&
		    (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)) {
			/* the socket stays readable: pause instead of spinning */
			log_err_ratelimited("nbd %s: accept: %m; pausing for a while", l->addr);
			evloop_watch_del(&l->watch);
			evloop_timer_arm(td_queue_loop(l->srv->qcs[0].q), &l->retry,
					 NBDS_ACCEPT_RETRY_NS, 0);
			return;
		}
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_err_ratelimited("nbd %s: accept: %m", l->addr);
			return;
		}
		if (ss.ss_family != AF_UNIX)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		else
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		peer_name(&ss, peer, sizeof(peer));
		if (!conn_admit(l->srv)) {
			log_err_ratelimited("nbd %s: connection from %s refused: %u connections "
					    "already, or shutting down",
					    l->addr, peer, l->srv->max_conns);
			close(fd);
			continue;
		}
		nbds_conn_accepted(l->srv, fd, peer);
	}
}

static void on_accept_retry(struct evloop_timer *t)
{
	struct nbds_listener *l = t->opaque;

	if (evloop_watch_add(td_queue_loop(l->srv->qcs[0].q), &l->watch) < 0)
		evloop_timer_arm(td_queue_loop(l->srv->qcs[0].q), &l->retry, NBDS_ACCEPT_RETRY_NS,
				 0);
}

/* ---- listening ------------------------------------------------------------ */

static int watch_add(void *opaque)
{
	struct nbds_listener *l = opaque;

	return evloop_watch_add(td_queue_loop(l->srv->qcs[0].q), &l->watch);
}

static int watch_del(void *opaque)
{
	struct nbds_listener *l = opaque;

	evloop_watch_del(&l->watch);
	evloop_timer_cancel(&l->retry);
	return 0;
}

static void listener_free(struct nbds_listener *l)
{
	if (l->fd >= 0)
		close(l->fd);
	if (l->unlink_path)
		unlink(l->unlink_path);
	free(l->unlink_path);
	free(l->addr);
	free(l);
}

/*
 * A socket file left by a server that is gone may be replaced; one that
 * something still listens on, or a file that is not a socket, may not.
 */
static int unix_path_free(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, err;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : neg_errno();
	if (!S_ISSOCK(st.st_mode)) {
		log_err("nbd unix:%s: exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	err = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ? -EADDRINUSE : 0;
	close(fd);
	if (err) {
		log_err("nbd unix:%s: another server is listening there", path);
		return err;
	}
	return unlink(path) < 0 ? neg_errno() : 0;
}

static int listen_unix(struct nbds_listener *l, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int err;

	if (!*path || strlen(path) >= sizeof(sun.sun_path)) {
		log_err("nbd unix:%s: the socket path is empty or longer than %zu bytes", path,
			sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sun.sun_path, path, strlen(path));
	err = unix_path_free(path, &sun);
	if (err)
		return err;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = neg_errno();
		log_err("nbd unix:%s: %s", path, err_str(err));
		return err;
	}
	l->unlink_path = strdup(path);
	if (!l->unlink_path)
		return -ENOMEM;
	if (chmod(path, 0600) < 0 || listen(l->fd, 128) < 0) {
		err = neg_errno();
		log_err("nbd unix:%s: %s", path, err_str(err));
		return err;
	}
	return 0;
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" into @host and @port. */
static int split_host_port(const char *spec, char *host, size_t hlen, const char **port)
{
	const char *colon = strrchr(spec, ':');
	size_t n;

	if (!colon) {
		snprintf(host, hlen, "127.0.0.1");
		*port = spec;
		return 0;
	}
	*port = colon + 1;
	n = (size_t)(colon - spec);
	if (n >= 2 && spec[0] == '[' && spec[n - 1] == ']') {
		spec++;
		n -= 2;
	}
	if (n == 0) {
		snprintf(host, hlen, "127.0.0.1");
		return 0;
	}
	if (n >= hlen)
		return -EINVAL;
	memcpy(host, spec, n);
	host[n] = 0;
	return 0;
}

static int listen_tcp(struct nbds_listener *l, const char *spec)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *port;
	char host[256];
	int err, one = 1;

	if (split_host_port(spec, host, sizeof(host), &port) || !*port) {
		log_err("nbd tcp:%s: expected tcp:HOST:PORT", spec);
		return -EINVAL;
	}
	err = getaddrinfo(host, port, &hints, &res);
	if (err) {
		log_err("nbd tcp:%s: %s", spec, gai_strerror(err));
		return -EINVAL;
	}
	l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l->fd, res->ai_addr, res->ai_addrlen) < 0 || listen(l->fd, 128) < 0) {
		err = neg_errno();
		log_err("nbd tcp:%s: %s", spec, err_str(err));
	}
	freeaddrinfo(res);
	return err;
}

int nbds_listen(struct nbds_server *s, const char *addr)
{
	struct nbds_listener *l = calloc(1, sizeof(*l));
	int err;

	if (!l || !(l->addr = strdup(addr))) {
		free(l);
		return -ENOMEM;
	}
	l->srv = s;
	l->fd = -1;
	if (strncmp(addr, "unix:", 5) == 0) {
		err = listen_unix(l, addr + 5);
	} else if (strncmp(addr, "tcp:", 4) == 0) {
		err = listen_tcp(l, addr + 4);
	} else {
		log_err("nbd: '%s' is not unix:PATH or tcp:HOST:PORT", addr);
		err = -EINVAL;
	}
	l->watch = (struct evloop_watch){
		.fd = l->fd, .events = EPOLLIN, .fn = on_accept, .opaque = l
	};
	evloop_timer_init(&l->retry, on_accept_retry, l);
	if (!err)
		err = td_queue_run(s->qcs[0].q, watch_add, l);
	if (err) {
		listener_free(l);
		return err;
	}
	l->next = s->listeners;
	s->listeners = l;
	log_info("nbd: listening on %s", addr);
	return 0;
}

/* ---- queues ---------------------------------------------------------------- */

static int qctx_attach(void *opaque)
{
	struct nbds_qctx *qc = opaque;

	evloop_hook_add(qc->loop, &qc->hook);
	return 0;
}

static int qctx_detach(void *opaque)
{
	struct nbds_qctx *qc = opaque;

	evloop_hook_del(qc->loop, &qc->hook);
	return 0;
}

static int qctx_stop(void *opaque)
{
	struct nbds_qctx *qc = opaque;
	struct nbds_conn *c, *next;

	qc->stopping = true;
	for (c = qc->conns; c; c = next) {
		next = c->next;
		nbds_conn_shutdown(c);
	}
	return 0;
}

/* ---- the server -------------------------------------------------------------- */

/*
 * The image was resized while paused: connections made from now on see the
 * new size.  Those already connected keep the size they were told (NBD has
 * no way to tell them); past the new end the vbd refuses their requests.
 */
static void on_resize(struct td_resize_notifier *n, uint64_t old_size, uint64_t new_size)
{
	struct nbds_server *s = n->opaque;

	pthread_mutex_lock(&s->lock);
	s->exp.size_bytes = ALIGN_DOWN(new_size, (uint64_t)s->block_bytes);
	pthread_mutex_unlock(&s->lock);
	log_info("nbd: the export is now %llu bytes for new connections",
		 (unsigned long long)s->exp.size_bytes);
}

static int export_init(struct nbds_server *s, const struct nbds_config *cfg,
		       const struct td_vbd_info *info)
{
	s->name = strdup(cfg->name ? cfg->name : "");
	s->description = strdup(cfg->description ? cfg->description : info->spec);
	if (!s->name || !s->description)
		return -ENOMEM;
	if (strlen(s->name) > NBDP_STRING_MAX || strlen(s->description) > NBDP_STRING_MAX) {
		log_err("nbd: export name or description longer than %u bytes", NBDP_STRING_MAX);
		return -EINVAL;
	}
	s->block_bytes = info->block_bytes;
	s->exp = (struct nbdp_export){
		.name = s->name,
		.description = s->description,
		.size_bytes = ALIGN_DOWN(info->size_bytes, (uint64_t)info->block_bytes),
		.readonly = info->readonly || cfg->readonly,
		.can_trim = info->can_discard,
		.can_zero = info->can_write_zeroes,
		.can_fast_zero = info->can_write_zeroes,
		.min_block = 1,
		.pref_block = MAX(4096u, info->phys_block_bytes),
		.max_block = NBDP_MAX_BLOCK_BYTES,
	};
	if (s->exp.size_bytes != info->size_bytes)
		log_warn("nbd: %s: the last %llu bytes (less than a block) are not exported",
			 info->spec, (unsigned long long)(info->size_bytes - s->exp.size_bytes));
	return 0;
}

/* The persistent bitmaps the image offers, as qemu:dirty-bitmap contexts. */
static int bitmaps_init(struct nbds_server *s)
{
	const char *names[NBDP_MAX_BITMAPS];
	unsigned n = 0, i;
	int err = vbd_bitmap_list(s->vbd, names, NBDP_MAX_BITMAPS, &n);

	if (err)
		return err;
	if (n > NBDP_MAX_BITMAPS)
		log_warn("nbd: the image has %u dirty bitmaps; only the first %u are exported", n,
			 NBDP_MAX_BITMAPS);
	n = MIN(n, NBDP_MAX_BITMAPS);
	for (i = 0; i < n; i++) {
		s->bitmaps[i] = strdup(names[i]);
		if (!s->bitmaps[i])
			return -ENOMEM;
		s->exp.nr_bitmaps++;
	}
	s->exp.bitmaps = (const char *const *)s->bitmaps;
	return 0;
}

static void server_free(struct nbds_server *s)
{
	unsigned i;

	for (i = 0; i < s->exp.nr_bitmaps; i++)
		free(s->bitmaps[i]);
	free(s->qcs);
	free(s->name);
	free(s->description);
	if (s->own_locks)
		td_blocklock_free(s->locks);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int queues_init(struct nbds_server *s)
{
	unsigned i;
	int err;

	s->qcs = calloc(s->nr_queues, sizeof(*s->qcs));
	if (!s->qcs)
		return -ENOMEM;
	for (i = 0; i < s->nr_queues; i++) {
		struct nbds_qctx *qc = &s->qcs[i];

		qc->srv = s;
		qc->q = vbd_queue(s->vbd, i);
		qc->loop = td_queue_loop(qc->q);
		qc->hook = (struct evloop_hook){ .fn = nbds_qctx_flush, .opaque = qc };
		err = td_queue_run(qc->q, qctx_attach, qc);
		if (err) {
			while (i--)
				td_queue_run(s->qcs[i].q, qctx_detach, &s->qcs[i]);
			return err;
		}
	}
	return 0;
}

int nbds_new(struct td_vbd *vbd, const struct nbds_config *cfg, struct nbds_server **out)
{
	struct nbds_server *s = calloc(1, sizeof(*s));
	struct td_vbd_info info;
	int err;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	vbd_get_info(vbd, &info);
	s->vbd = vbd;
	s->nr_queues = info.nr_queues;
	s->max_conns = cfg->max_conns ? cfg->max_conns : NBDS_DEFAULT_MAX_CONNS;
	s->locks = cfg->locks;
	err = export_init(s, cfg, &info);
	if (!err)
		err = bitmaps_init(s);
	if (!err && !s->locks) {
		err = td_blocklock_new(&s->locks);
		s->own_locks = !err;
	}
	if (!err)
		err = queues_init(s);
	if (err) {
		server_free(s);
		return err;
	}
	s->resize = (struct td_resize_notifier){ .fn = on_resize, .opaque = s };
	vbd_resize_notifier_add(vbd, &s->resize);
	*out = s;
	return 0;
}

void nbds_free(struct nbds_server *s)
{
	struct nbds_listener *l;
	unsigned i;

	if (!s)
		return;
	vbd_resize_notifier_del(s->vbd, &s->resize);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	while ((l = s->listeners)) {
		s->listeners = l->next;
		td_queue_run(s->qcs[0].q, watch_del, l);
		listener_free(l);
	}
	for (i = 0; i < s->nr_queues; i++)
		td_queue_run(s->qcs[i].q, qctx_stop, &s->qcs[i]);
	pthread_mutex_lock(&s->lock);
	while (s->nr_conns)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (i = 0; i < s->nr_queues; i++)
		td_queue_run(s->qcs[i].q, qctx_detach, &s->qcs[i]);
	server_free(s);
}

unsigned nbds_conn_count(const struct nbds_server *s)
{
	unsigned n;

	pthread_mutex_lock((pthread_mutex_t *)&s->lock);
	n = s->nr_conns;
	pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
	return n;
}
