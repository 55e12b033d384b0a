/* SPDX-License-Identifier: MIT */
/*
 * fake-xenstored: a small xenstore daemon for tests on machines with no Xen.
 *
 * The real xenstored cannot start without the grant-table and event-channel
 * devices, but libxenstore (and the xenstore-* tools) talk to a daemon over
 * a unix socket named by XENSTORED_PATH.  This program answers that socket
 * with the xenstore wire protocol (xs_wire.h: a 16-byte header {type,
 * req_id, tx_id, len} and a NUL-separated payload): read, write, mkdir, rm,
 * directory, watches with asynchronous XS_WATCH_EVENT (fired once on
 * registration and on every change at or below the watched path, or of a
 * removed ancestor), serialisable transactions (optimistic: a commit fails
 * with EAGAIN if anything committed since the transaction started), and
 * accepting answers to the permission and domain queries.
 *
 * Usage: fake-xenstored [-v] [--eagain N] [--pidfile FILE] SOCKET
 *   --eagain N   the first N transaction commits fail with EAGAIN
 *   -v           log every request to stderr
 * SIGTERM or SIGINT ends it cleanly.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/io/xs_wire.h>

#include "checked.h"
#include "errors.h"

#define MAX_CONNS 64
#define MAX_TXNS 64
#define HDR_BYTES 16u

struct node {
	char *path;
	char *val;
	unsigned len;
};

struct tree {
	struct node *v;
	size_t n, cap;
};

struct watch {
	char *path;
	char *token;
	struct watch *next;
};

struct conn {
	int fd;
	uint8_t in[HDR_BYTES + XENSTORE_PAYLOAD_MAX];
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_cap;
	struct watch *watches;
};

struct txn {
	uint32_t id;
	struct conn *owner;
	struct tree t;
	uint64_t gen;
	char **touched;
	size_t ntouched;
};

static struct tree store;
static uint64_t store_gen;
static struct conn *conns[MAX_CONNS];
static struct txn *txns[MAX_TXNS];
static uint32_t next_txn_id = 1;
static unsigned eagain_left;
static bool verbose;
static volatile sig_atomic_t stop;

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p) {
		fprintf(stderr, "fake-xenstored: out of memory\n");
		exit(1);
	}
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	return p;
}

/* ---- the tree -------------------------------------------------------- */

static struct node *tree_find(struct tree *t, const char *path)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->v[i].path, path) == 0)
			return &t->v[i];
	return NULL;
}

/* Is @path equal to @dir or below it? */
static bool at_or_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static void tree_put(struct tree *t, const char *path, const char *val, unsigned len)
{
	struct node *nd = tree_find(t, path);

	if (!nd) {
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 64;
			t->v = realloc(t->v, t->cap * sizeof(*t->v));
			if (!t->v)
				exit(1);
		}
		nd = &t->v[t->n++];
		nd->path = xstrndup(path, strlen(path));
		nd->val = NULL;
	}
	free(nd->val);
	nd->val = xstrndup(val, len);
	nd->len = len;
}

/* Write @path, creating missing parents with empty values as xenstored does. */
static void tree_write(struct tree *t, const char *path, const char *val, unsigned len)
{
	char buf[XENSTORE_ABS_PATH_MAX + 1];
	char *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = strchr(buf + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (!tree_find(t, buf))
			tree_put(t, buf, "", 0);
		*p = '/';
	}
	tree_put(t, path, val, len);
}

static void tree_rm(struct tree *t, const char *path)
{
	size_t i = 0;

	while (i < t->n) {
		if (at_or_below(t->v[i].path, path)) {
			free(t->v[i].path);
			free(t->v[i].val);
			t->v[i] = t->v[--t->n];
		} else {
			i++;
		}
	}
}

static void tree_clone(struct tree *dst, const struct tree *src)
{
	size_t i;

	dst->n = dst->cap = src->n;
	dst->v = xmalloc((src->n ? src->n : 1) * sizeof(*dst->v));
	for (i = 0; i < src->n; i++) {
		dst->v[i].path = xstrndup(src->v[i].path, strlen(src->v[i].path));
		dst->v[i].val = xstrndup(src->v[i].val, src->v[i].len);
		dst->v[i].len = src->v[i].len;
	}
}

static void tree_free(struct tree *t)
{
	size_t i;

	for (i = 0; i < t->n; i++) {
		free(t->v[i].path);
		free(t->v[i].val);
	}
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* ---- output ------------------------------------------------------------ */

static void conn_queue(struct conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id,
		       const void *payload, size_t len)
{
	struct xsd_sockmsg hdr = { .type = type, .req_id = req_id, .tx_id = tx_id, .len = len };
	size_t need = c->out_len + sizeof(hdr) + len;

	if (need > c->out_cap) {
		c->out_cap = need * 2;
		c->out = realloc(c->out, c->out_cap);
		if (!c->out)
			exit(1);
	}
	memcpy(c->out + c->out_len, &hdr, sizeof(hdr));
	memcpy(c->out + c->out_len + sizeof(hdr), payload, len);
	c->out_len = need;
}

static void reply_err(struct conn *c, const struct xsd_sockmsg *m, int err)
{
	const char *name = "EINVAL";
	size_t i;

	for (i = 0; i < ARRAY_SIZE(xsd_errors); i++)
		if (xsd_errors[i].errnum == err)
			name = xsd_errors[i].errstring;
	if (verbose)
		fprintf(stderr, "fake-xenstored:   -> %s\n", name);
	conn_queue(c, XS_ERROR, m->req_id, m->tx_id, name, strlen(name) + 1);
}

static void reply_ok(struct conn *c, const struct xsd_sockmsg *m)
{
	conn_queue(c, m->type, m->req_id, m->tx_id, "OK", 3);
}

static void fire_one(struct conn *c, const char *path, const char *token)
{
	char buf[XENSTORE_PAYLOAD_MAX];
	int n = snprintf(buf, sizeof(buf), "%s%c%s", path, '\0', token);

	if (n > 0 && (size_t)n < sizeof(buf))
		conn_queue(c, XS_WATCH_EVENT, 0, 0, buf, (size_t)n + 1);
}

/* A change at @path: fire the watches at or above it, and those below it. */
static void fire_watches(const char *path)
{
	struct watch *w;
	size_t i;

	for (i = 0; i < MAX_CONNS; i++) {
		if (!conns[i])
			continue;
		for (w = conns[i]->watches; w; w = w->next) {
			if (at_or_below(path, w->path))
				fire_one(conns[i], path, w->token);
			else if (at_or_below(w->path, path))
				fire_one(conns[i], w->path, w->token);
		}
	}
}

/* ---- transactions -------------------------------------------------------- */

static struct txn *txn_get(uint32_t id)
{
	size_t i;

	for (i = 0; i < MAX_TXNS; i++)
		if (txns[i] && txns[i]->id == id)
			return txns[i];
	return NULL;
}

static void txn_free(struct txn *x)
{
	size_t i;

	for (i = 0; i < MAX_TXNS; i++)
		if (txns[i] == x)
			txns[i] = NULL;
	for (i = 0; i < x->ntouched; i++)
		free(x->touched[i]);
	free(x->touched);
	tree_free(&x->t);
	free(x);
}

/* The tree an operation works on, or NULL for an unknown transaction. */
static struct tree *op_tree(const struct xsd_sockmsg *m, struct txn **x)
{
	*x = NULL;
	if (m->tx_id == 0)
		return &store;
	*x = txn_get(m->tx_id);
	return *x ? &(*x)->t : NULL;
}

/* Record a change: fire now, or at commit for a transaction. */
static void changed(struct txn *x, const char *path)
{
	if (!x) {
		store_gen++;
		fire_watches(path);
		return;
	}
	x->touched = realloc(x->touched, (x->ntouched + 1) * sizeof(*x->touched));
	if (!x->touched)
		exit(1);
	x->touched[x->ntouched++] = xstrndup(path, strlen(path));
}

static void do_txn_start(struct conn *c, const struct xsd_sockmsg *m)
{
	char buf[16];
	size_t i;

	for (i = 0; i < MAX_TXNS && txns[i]; i++)
		;
	if (i == MAX_TXNS)
		return reply_err(c, m, ENOSPC);
	txns[i] = xmalloc(sizeof(*txns[i]));
	txns[i]->id = next_txn_id++;
	txns[i]->owner = c;
	txns[i]->gen = store_gen;
	tree_clone(&txns[i]->t, &store);
	snprintf(buf, sizeof(buf), "%u", txns[i]->id);
	conn_queue(c, m->type, m->req_id, 0, buf, strlen(buf) + 1);
}

static void do_txn_end(struct conn *c, const struct xsd_sockmsg *m, const char *arg)
{
	struct txn *x = txn_get(m->tx_id);
	size_t i;

	if (!x || x->owner != c)
		return reply_err(c, m, ENOENT);
	if (strcmp(arg, "T") == 0) {
		if (eagain_left > 0 || x->gen != store_gen) {
			if (eagain_left > 0)
				eagain_left--;
			txn_free(x);
			return reply_err(c, m, EAGAIN);
		}
		tree_free(&store);
		store = x->t;
		memset(&x->t, 0, sizeof(x->t));
		store_gen++;
		for (i = 0; i < x->ntouched; i++)
			fire_watches(x->touched[i]);
	}
	txn_free(x);
	reply_ok(c, m);
}

/* ---- requests ---------------------------------------------------------- */

/* The payload's first string, made absolute; NULL if malformed. */
static const char *arg_path(const struct xsd_sockmsg *m, const char *p, char *buf, size_t size)
{
	size_t n = strnlen(p, m->len);

	if (n == m->len || n == 0 || n > XENSTORE_ABS_PATH_MAX)
		return NULL;
	if (p[0] == '/' || p[0] == '@')
		return p;
	snprintf(buf, size, "/local/domain/0/%s", p);
	return buf;
}

static void do_directory(struct conn *c, const struct xsd_sockmsg *m, struct tree *t,
			 const char *path)
{
	char out[XENSTORE_PAYLOAD_MAX];
	size_t i, n = 0, plen = strlen(path);

	if (!tree_find(t, path))
		return reply_err(c, m, ENOENT);
	for (i = 0; i < t->n; i++) {
		const char *p = t->v[i].path;
		const char *name = p + plen + (strcmp(path, "/") != 0);

		if (!at_or_below(p, path) || strcmp(p, path) == 0 || strchr(name, '/'))
			continue;
		if (n + strlen(name) + 1 > sizeof(out))
			return reply_err(c, m, E2BIG);
		memcpy(out + n, name, strlen(name) + 1);
		n += strlen(name) + 1;
	}
	conn_queue(c, m->type, m->req_id, m->tx_id, out, n);
}

static void do_watch(struct conn *c, const struct xsd_sockmsg *m, const char *path, const char *p,
		     bool add)
{
	const char *token = p + strlen(p) + 1; /* the payload is NUL-terminated */
	struct watch **pp, *w;

	if (strlen(p) + 1 >= m->len)
		return reply_err(c, m, EINVAL);
	for (pp = &c->watches; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->path, path) == 0 && strcmp((*pp)->token, token) == 0)
			break;
	if (!add) {
		if (!*pp)
			return reply_err(c, m, ENOENT);
		w = *pp;
		*pp = w->next;
		free(w->path);
		free(w->token);
		free(w);
		return reply_ok(c, m);
	}
	if (*pp)
		return reply_err(c, m, EEXIST);
	w = xmalloc(sizeof(*w));
	w->path = xstrndup(path, strlen(path));
	w->token = xstrndup(token, strlen(token));
	w->next = c->watches;
	c->watches = w;
	reply_ok(c, m);
	fire_one(c, path, token);
}

static void do_write(struct conn *c, const struct xsd_sockmsg *m, struct tree *t, struct txn *x,
		     const char *path, const char *p)
{
	size_t plen = strlen(p) + 1;

	tree_write(t, path, p + plen, m->len - plen);
	changed(x, path);
	reply_ok(c, m);
}

static void do_path_op(struct conn *c, const struct xsd_sockmsg *m, const char *p)
{
	char buf[XENSTORE_ABS_PATH_MAX + 32];
	const char *path = arg_path(m, p, buf, sizeof(buf));
	struct txn *x;
	struct tree *t = op_tree(m, &x);
	struct node *nd;

	if (!path)
		return reply_err(c, m, EINVAL);
	if (!t)
		return reply_err(c, m, ENOENT);
	switch (m->type) {
	case XS_READ:
		nd = tree_find(t, path);
		if (!nd)
			return reply_err(c, m, ENOENT);
		return conn_queue(c, m->type, m->req_id, m->tx_id, nd->val, nd->len);
	case XS_DIRECTORY:
		return do_directory(c, m, t, path);
	case XS_WRITE:
		return do_write(c, m, t, x, path, p);
	case XS_MKDIR:
		if (!tree_find(t, path)) {
			tree_write(t, path, "", 0);
			changed(x, path);
		}
		return reply_ok(c, m);
	case XS_RM:
		if (tree_find(t, path)) {
			tree_rm(t, path);
			changed(x, path);
		}
		return reply_ok(c, m);
	case XS_GET_PERMS:
		if (!tree_find(t, path))
			return reply_err(c, m, ENOENT);
		return conn_queue(c, m->type, m->req_id, m->tx_id, "n0", 3);
	case XS_SET_PERMS:
		return reply_ok(c, m);
	case XS_WATCH:
	case XS_UNWATCH:
		return do_watch(c, m, path, p, m->type == XS_WATCH);
	}
	reply_err(c, m, ENOSYS);
}

static void handle(struct conn *c, const struct xsd_sockmsg *m, const char *p)
{
	char buf[64];

	if (verbose)
		fprintf(stderr, "fake-xenstored: type %u tx %u '%.*s'\n", m->type, m->tx_id,
			(int)strnlen(p, m->len), p);
	switch (m->type) {
	case XS_TRANSACTION_START:
		return do_txn_start(c, m);
	case XS_TRANSACTION_END:
		if (strnlen(p, m->len) == m->len)
			return reply_err(c, m, EINVAL);
		return do_txn_end(c, m, p);
	case XS_GET_DOMAIN_PATH:
		if (strnlen(p, m->len) == m->len)
			return reply_err(c, m, EINVAL);
		snprintf(buf, sizeof(buf), "/local/domain/%.16s", p);
		return conn_queue(c, m->type, m->req_id, 0, buf, strlen(buf) + 1);
	case XS_IS_DOMAIN_INTRODUCED:
		return conn_queue(c, m->type, m->req_id, 0, "T", 2);
	case XS_RESET_WATCHES:
		return reply_ok(c, m);
	}
	do_path_op(c, m, p);
}

/* ---- connections --------------------------------------------------------- */

static void conn_free(struct conn *c)
{
	struct watch *w;
	size_t i;

	for (i = 0; i < MAX_TXNS; i++)
		if (txns[i] && txns[i]->owner == c)
			txn_free(txns[i]);
	while ((w = c->watches)) {
		c->watches = w->next;
		free(w->path);
		free(w->token);
		free(w);
	}
	close(c->fd);
	free(c->out);
	free(c);
}

/* Read what is there and handle every whole message.  false: drop it. */
static bool conn_read(struct conn *c)
{
	struct xsd_sockmsg m;
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);

	if (n <= 0)
		return n < 0 && errno == EINTR;
	c->in_len += (size_t)n;
	while (c->in_len >= HDR_BYTES) {
		char payload[XENSTORE_PAYLOAD_MAX + 1];

		memcpy(&m, c->in, sizeof(m));
		if (m.len > XENSTORE_PAYLOAD_MAX) {
			fprintf(stderr, "fake-xenstored: payload of %u bytes, dropping client\n",
				m.len);
			return false;
		}
		if (c->in_len < HDR_BYTES + m.len)
			break;
		memcpy(payload, c->in + HDR_BYTES, m.len);
		payload[m.len] = '\0';
		c->in_len -= HDR_BYTES + m.len;
		memmove(c->in, c->in + HDR_BYTES + m.len, c->in_len);
		handle(c, &m, payload);
	}
	return true;
}

static bool conn_write(struct conn *c)
{
	ssize_t n = write(c->fd, c->out, c->out_len);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	memmove(c->out, c->out + n, c->out_len - (size_t)n);
	c->out_len -= (size_t)n;
	return true;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "fake-xenstored: socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		fprintf(stderr, "fake-xenstored: %s: %m\n", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void accept_one(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < MAX_CONNS && conns[i]; i++)
		;
	if (i == MAX_CONNS) {
		close(fd);
		return;
	}
	conns[i] = xmalloc(sizeof(*conns[i]));
	conns[i]->fd = fd;
}

static void serve(int lfd)
{
	struct pollfd pfd[MAX_CONNS + 1];
	size_t i;

	while (!stop) {
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (i = 0; i < MAX_CONNS; i++) {
			pfd[i + 1] = (struct pollfd){ .fd = -1 };
			if (conns[i]) {
				pfd[i + 1].fd = conns[i]->fd;
				pfd[i + 1].events = POLLIN | (conns[i]->out_len ? POLLOUT : 0);
			}
		}
		if (poll(pfd, MAX_CONNS + 1, -1) < 0)
			continue;
		if (pfd[0].revents & POLLIN)
			accept_one(lfd);
		for (i = 0; i < MAX_CONNS; i++) {
			short ev = pfd[i + 1].revents;
			bool ok = true;

			if (!conns[i] || !ev || pfd[i + 1].fd != conns[i]->fd)
				continue;
			if (ev & POLLOUT)
				ok = conn_write(conns[i]);
			if (ok && (ev & (POLLIN | POLLHUP | POLLERR)))
				ok = conn_read(conns[i]);
			if (!ok) {
				conn_free(conns[i]);
				conns[i] = NULL;
			}
		}
	}
}

static void on_signal(int sig)
{
	stop = 1;
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		fprintf(stderr, "fake-xenstored: %s: %m\n", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "eagain", required_argument, NULL, 'e' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ 0 },
	};
	struct sigaction sa = { .sa_handler = on_signal };
	const char *pidfile = NULL;
	uint64_t v;
	size_t i;
	int c, lfd;

	while ((c = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
		switch (c) {
		case 'v':
			verbose = true;
			break;
		case 'e':
			if (parse_u64(optarg, false, &v) < 0 || v > UINT32_MAX) {
				fprintf(stderr, "fake-xenstored: bad --eagain '%s'\n", optarg);
				return 2;
			}
			eagain_left = (unsigned)v;
			break;
		case 'p':
			pidfile = optarg;
			break;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr,
			"usage: fake-xenstored [-v] [--eagain N] [--pidfile FILE] SOCKET\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_on(argv[optind]);
	if (lfd < 0)
		return 1;
	tree_write(&store, "/local/domain/0/name", "Domain-0", 8);
	if (pidfile && write_pidfile(pidfile) < 0)
		return 1;
	serve(lfd);
	for (i = 0; i < MAX_CONNS; i++)
		if (conns[i])
			conn_free(conns[i]);
	tree_free(&store);
	close(lfd);
	unlink(argv[optind]);
	return 0;
}
