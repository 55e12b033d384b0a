// SPDX-License-Identifier: MIT
/*
 * One NBD connection's socket, on its queue thread: the handshake, the
 * request stream and the replies.
 *
 * Receiving: reads fill a 128 KiB buffer, so one read() takes in many
 * small requests; a large WRITE payload that is not in the buffer yet is
 * read straight into its arena buffer.  A request that finds no free slot
 * or arena space stays in the buffer and the socket is not read until a
 * reply has gone out: that is the back-pressure on a client that sends
 * faster than the disk, or does not read its replies.
 *
 * Sending: replies completed during a loop iteration are queued, and the
 * queue's prepare hook sends them with one sendmsg() per connection at the
 * start of the next iteration; what the socket does not take waits for
 * EPOLLOUT.
 *
 * Ending: a protocol violation, a socket error or a handshake timeout is a
 * hard disconnect (nothing more is sent); NBD_CMD_DISC, NBD_OPT_ABORT, EOF
 * and server shutdown stop reading and let the requests in flight finish
 * and their replies go out.  Either way the connection is freed only once
 * no request of it is in the vbd; every entry point ends with
 * conn_check(), the one place that frees it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "log.h"
#include "tapdisk/nbd-internal.h"

static void rx_process(struct nbds_conn *c);

/* ---- lifetime ------------------------------------------------------------ */

static void conn_free(struct nbds_conn *c)
{
	free(c->slots);
	free(c->send_iov);
	nbds_arena_fini(&c->arena);
	nbdp_buf_free(&c->hs_out);
	free(c->rx);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* The last step: unlinked, freed, counted out.  No touching @c after. */
static void conn_destroy(struct nbds_conn *c)
{
	struct nbds_server *srv = c->srv;
	struct nbds_qctx *qc = c->qc;

	log_dbg(LOG_F_NBD, "nbd %s: disconnected", c->peer);
	if (c->flush_queued) {
		struct nbds_conn **pp = &qc->flush;

		while (*pp != c)
			pp = &(*pp)->flush_next;
		*pp = c->flush_next;
	}
	evloop_watch_del(&c->watch);
	evloop_timer_cancel(&c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else if (qc->conns == c)
		qc->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	conn_free(c);
	pthread_mutex_lock(&srv->lock);
	srv->nr_conns--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

static bool tx_idle(const struct nbds_conn *c)
{
	return !c->tx_head && c->hs_sent == c->hs_out.len;
}

/* Free @c if it is closing and nothing of it is in flight or queued. */
static void conn_check(struct nbds_conn *c)
{
	if (c->closing && c->busy == 0 && (c->hard || tx_idle(c)))
		conn_destroy(c);
}

static void conn_set_events(struct nbds_conn *c, bool want_out)
{
	uint32_t ev = 0;

	if (c->hard)
		return;
	if (c->rx_state != RX_NONE && !c->blocked && !c->closing)
		ev |= EPOLLIN;
	if (want_out)
		ev |= EPOLLOUT;
	if (ev != c->events && evloop_watch_mod(&c->watch, ev) == 0)
		c->events = ev;
}

/* Reading stops: a write whose payload had not all come is dropped. */
static void rx_stop(struct nbds_conn *c)
{
	struct nbds_slot *s = c->cur;

	c->closing = true;
	c->rx_state = RX_NONE;
	c->cur = NULL;
	if (s)
		nbds_conn_slot_free(s);
}

/* Stop reading, finish what is in flight, send the replies, then close. */
static void conn_drain(struct nbds_conn *c)
{
	rx_stop(c);
	conn_set_events(c, (c->events & EPOLLOUT) != 0);
}

void nbds_conn_fail(struct nbds_conn *c, const char *why)
{
	struct nbds_slot *s;

	if (c->hard)
		return;
	if (c->closing)
		log_dbg(LOG_F_NBD, "nbd %s: %s while closing", c->peer, why);
	else
		log_warn("nbd %s: %s; disconnecting", c->peer, why);
	c->hard = true;
	rx_stop(c);
	evloop_watch_del(&c->watch);
	while ((s = c->tx_head)) {
		c->tx_head = s->next;
		nbds_conn_slot_free(s);
	}
	c->tx_tail = NULL;
}

/*
 * The server stops: requests in flight finish and their replies are sent,
 * but a client that does not read them holds the server up only so long.
 */
void nbds_conn_shutdown(struct nbds_conn *c)
{
	if (c->rx_state < RX_REQ_HDR) {
		nbds_conn_fail(c, "server shutting down during the handshake");
	} else {
		conn_drain(c);
		evloop_timer_arm(c->qc->loop, &c->timer, NBDS_SHUTDOWN_NS, 0);
	}
	conn_check(c);
}

/* ---- sending ------------------------------------------------------------- */

static void flush_schedule(struct nbds_conn *c)
{
	if (c->flush_queued || c->hard)
		return;
	c->flush_queued = true;
	c->flush_next = c->qc->flush;
	c->qc->flush = c;
}

static int send_hs(struct nbds_conn *c)
{
	ssize_t n;

	while (c->hs_sent < c->hs_out.len) {
		n = send(c->fd, c->hs_out.data + c->hs_sent, c->hs_out.len - c->hs_sent,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return neg_errno();
		c->hs_sent += (size_t)n;
	}
	if (c->rx_state >= RX_REQ_HDR) {
		nbdp_buf_free(&c->hs_out); /* the handshake is over */
		c->hs_sent = 0;
	}
	return 0;
}

/* Gather the queued replies' unsent iovecs; returns how many. */
static unsigned gather(struct nbds_conn *c, size_t *total)
{
	struct nbds_slot *s;
	unsigned n = 0, i;

	*total = 0;
	for (s = c->tx_head; s && n < NBDS_SEND_IOV; s = s->next) {
		for (i = s->sent_iov; i < s->iovcnt && n < NBDS_SEND_IOV; i++) {
			c->send_iov[n] = s->iov[i];
			if (i == s->sent_iov) {
				c->send_iov[n].iov_base =
					(uint8_t *)s->iov[i].iov_base + s->sent_bytes;
				c->send_iov[n].iov_len -= s->sent_bytes;
			}
			*total += c->send_iov[n++].iov_len;
		}
	}
	return n;
}

/* @n bytes went out: retire the replies they completed. */
static void advance(struct nbds_conn *c, size_t n)
{
	struct nbds_slot *s;

	while ((s = c->tx_head) && (n || s->sent_iov == s->iovcnt)) {
		while (n && s->sent_iov < s->iovcnt) {
			size_t left = s->iov[s->sent_iov].iov_len - s->sent_bytes;
			size_t take = MIN(left, n);

			s->sent_bytes += take;
			n -= take;
			if (s->sent_bytes == s->iov[s->sent_iov].iov_len) {
				s->sent_iov++;
				s->sent_bytes = 0;
			}
		}
		if (s->sent_iov < s->iovcnt)
			break;
		c->tx_head = s->next;
		if (!c->tx_head)
			c->tx_tail = NULL;
		nbds_conn_slot_free(s);
	}
}

static void tx_flush(struct nbds_conn *c)
{
	struct msghdr msg = { 0 };
	size_t total;
	ssize_t n;
	int err;

	if (c->hard)
		return;
	err = send_hs(c);
	while (!err && c->hs_sent == c->hs_out.len && c->tx_head) {
		msg.msg_iov = c->send_iov;
		msg.msg_iovlen = gather(c, &total);
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = neg_errno();
			break;
		}
		advance(c, (size_t)n);
		if ((size_t)n < total)
			err = -EAGAIN;
	}
	if (err && err != -EAGAIN) {
		char why[96];

		snprintf(why, sizeof(why), "send: %s", err_str(err));
		nbds_conn_fail(c, why);
		return;
	}
	conn_set_events(c, err == -EAGAIN);
}

/*
 * One at a time until none is left: sending frees slots, which lets the
 * requests waiting in a receive buffer run, and some of those reply at
 * once (errors, zero lengths); they are sent here too, since the loop is
 * about to sleep and nothing else would wake it for them.
 */
void nbds_qctx_flush(struct evloop_hook *h)
{
	struct nbds_qctx *qc = h->opaque;
	struct nbds_conn *c;

	while ((c = qc->flush)) {
		qc->flush = c->flush_next;
		c->flush_queued = false;
		tx_flush(c);
		conn_check(c);
	}
}

void nbds_conn_queue_reply(struct nbds_slot *s)
{
	struct nbds_conn *c = s->c;

	if (c->hard) {
		nbds_conn_slot_free(s);
		conn_check(c);
		return;
	}
	s->sent_iov = 0;
	s->sent_bytes = 0;
	s->next = NULL;
	if (c->tx_tail)
		c->tx_tail->next = s;
	else
		c->tx_head = s;
	c->tx_tail = s;
	flush_schedule(c);
}

/* ---- slots ------------------------------------------------------------- */

void nbds_conn_slot_free(struct nbds_slot *s)
{
	struct nbds_conn *c = s->c;

	if (s->has_span)
		nbds_arena_put(&c->arena, &s->span);
	s->has_span = false;
	s->next = c->free_slots;
	c->free_slots = s;
	c->busy--;
	if (c->blocked) {
		c->blocked = false;
		rx_process(c);
		conn_set_events(c, (c->events & EPOLLOUT) != 0);
	}
}

static int enter_transmission(struct nbds_conn *c)
{
	unsigned i;

	c->slots = calloc(NBDS_SLOTS, sizeof(*c->slots));
	c->send_iov = calloc(NBDS_SEND_IOV, sizeof(*c->send_iov));
	if (!c->slots || !c->send_iov || nbds_arena_init(&c->arena, NBDS_ARENA_BYTES) < 0) {
		log_err("nbd %s: out of memory for the connection's buffers", c->peer);
		return -ENOMEM;
	}
	for (i = NBDS_SLOTS; i-- > 0;) {
		c->slots[i].c = c;
		c->slots[i].next = c->free_slots;
		c->free_slots = &c->slots[i];
	}
	evloop_timer_cancel(&c->timer);
	c->rx_state = RX_REQ_HDR;
	log_dbg(LOG_F_NBD, "nbd %s: transmission (structured replies %s, %u contexts)", c->peer,
		c->sess.structured ? "on" : "off", nbdp_meta_count(&c->sess));
	return 0;
}

/* ---- receiving: the handshake ------------------------------------------ */

static void consume(struct nbds_conn *c, size_t n)
{
	c->rx_start += n;
	if (c->rx_start == c->rx_end)
		c->rx_start = c->rx_end = 0;
}

static void handle_option(struct nbds_conn *c, const uint8_t *data)
{
	enum nbdp_opt_next next;

	log_dbg(LOG_F_NBD, "nbd %s: option %u, %u bytes", c->peer, c->opt, c->opt_len);
	if (nbdp_opt_handle(&c->sess, &c->exp, c->opt, data, c->opt_len, &c->hs_out, &next)) {
		nbds_conn_fail(c, "out of memory in the handshake");
		return;
	}
	consume(c, c->opt_len);
	flush_schedule(c);
	if (next == NBDP_NEXT_CLOSE) {
		conn_drain(c);
	} else if (next == NBDP_NEXT_TRANSMIT) {
		if (enter_transmission(c))
			nbds_conn_fail(c, "cannot enter transmission");
	} else {
		c->rx_state = RX_OPT_HDR;
	}
}

/* One step of the handshake; false when more bytes are needed. */
static bool rx_handshake(struct nbds_conn *c, const uint8_t *p, size_t avail)
{
	size_t n;

	switch (c->rx_state) {
	case RX_CLIENT_FLAGS:
		if (avail < 4)
			return false;
		if (nbdp_client_flags(&c->sess, get_be32(p)) < 0) {
			nbds_conn_fail(c, "client flags the server did not offer");
			return true;
		}
		consume(c, 4);
		c->rx_state = RX_OPT_HDR;
		return true;
	case RX_OPT_HDR:
		if (avail < NBDP_OPT_HDR_BYTES)
			return false;
		if (get_be64(p) != NBDP_OPTS_MAGIC) {
			nbds_conn_fail(c, "bad option magic");
			return true;
		}
		c->opt = get_be32(p + 8);
		c->opt_len = get_be32(p + 12);
		consume(c, NBDP_OPT_HDR_BYTES);
		c->discard = c->opt_len;
		c->rx_state = c->opt_len > NBDP_OPT_MAX_BYTES ? RX_OPT_DISCARD : RX_OPT_DATA;
		return true;
	case RX_OPT_DATA:
		if (avail < c->opt_len)
			return false;
		handle_option(c, p);
		return true;
	default: /* RX_OPT_DISCARD */
		n = (size_t)MIN((uint64_t)avail, c->discard);
		consume(c, n);
		c->discard -= n;
		if (c->discard)
			return false;
		if (nbdp_opt_too_big(c->opt, &c->hs_out))
			nbds_conn_fail(c, "out of memory in the handshake");
		flush_schedule(c);
		c->rx_state = RX_OPT_HDR;
		return true;
	}
}

/* ---- receiving: requests --------------------------------------------------- */

static uint8_t *payload_dest(struct nbds_slot *s)
{
	return s->buf + (s->r.offset - s->start) + s->got;
}

static void payload_got(struct nbds_conn *c, size_t n)
{
	struct nbds_slot *s = c->cur;

	s->got += (uint32_t)n;
	if (s->got < s->r.len)
		return;
	c->cur = NULL;
	c->rx_state = RX_REQ_HDR;
	nbds_io_payload_done(s);
}

/* A request header; false when it must wait (or the connection failed). */
static bool rx_request(struct nbds_conn *c, const uint8_t *p)
{
	struct nbdp_request r;
	struct nbds_slot *s;
	bool disc;
	uint32_t err;

	if (nbdp_request_decode(p, &r)) {
		nbds_conn_fail(c, "bad request magic");
		return false;
	}
	if (r.type == NBDP_CMD_DISC) {
		consume(c, NBDP_REQUEST_BYTES);
		conn_drain(c);
		return false;
	}
	err = nbdp_request_check(&c->sess, &c->exp, &r, &disc);
	if (disc) {
		nbds_conn_fail(c, "a write larger than the maximum block size");
		return false;
	}
	if (err) {
		s = c->free_slots;
		if (!s) {
			c->blocked = true;
			return false;
		}
		c->free_slots = s->next;
		c->busy++;
		s->r = r;
		consume(c, NBDP_REQUEST_BYTES);
		if (r.type == NBDP_CMD_WRITE && r.len) {
			c->discard = r.len;
			c->rx_state = RX_DISCARD;
		}
		nbds_reply_error(s, err, NULL);
		return true;
	}
	if (nbds_io_start(c, &r, &s) == -EAGAIN) {
		c->blocked = true;
		return false;
	}
	consume(c, NBDP_REQUEST_BYTES);
	if (r.type == NBDP_CMD_WRITE && r.len) {
		c->cur = s;
		c->rx_state = RX_PAYLOAD;
	}
	return true;
}

/* One step of the transmission phase; false when it cannot go on now. */
static bool rx_transmission(struct nbds_conn *c, const uint8_t *p, size_t avail)
{
	size_t n;

	switch (c->rx_state) {
	case RX_REQ_HDR:
		if (avail < NBDP_REQUEST_BYTES)
			return false;
		return rx_request(c, p);
	case RX_PAYLOAD:
		n = MIN(avail, (size_t)(c->cur->r.len - c->cur->got));
		if (n == 0)
			return false;
		memcpy(payload_dest(c->cur), p, n);
		consume(c, n);
		payload_got(c, n);
		return true;
	case RX_DISCARD:
		n = (size_t)MIN((uint64_t)avail, c->discard);
		if (n == 0)
			return false;
		consume(c, n);
		c->discard -= n;
		if (!c->discard)
			c->rx_state = RX_REQ_HDR;
		return true;
	default:
		return false;
	}
}

static void rx_process(struct nbds_conn *c)
{
	bool more = true;

	while (more && !c->closing && !c->blocked) {
		const uint8_t *p = c->rx + c->rx_start;
		size_t avail = c->rx_end - c->rx_start;

		if (c->rx_state < RX_REQ_HDR)
			more = rx_handshake(c, p, avail);
		else
			more = rx_transmission(c, p, avail);
	}
	/* keep room for the largest message that must be whole in the buffer */
	if (c->rx_start && NBDS_RX_BYTES - c->rx_end < NBDP_OPT_MAX_BYTES + NBDP_OPT_HDR_BYTES) {
		memmove(c->rx, c->rx + c->rx_start, c->rx_end - c->rx_start);
		c->rx_end -= c->rx_start;
		c->rx_start = 0;
	}
}

/* End of stream from the client: serve what it sent, then close. */
static void rx_eof(struct nbds_conn *c)
{
	if (c->rx_state == RX_REQ_HDR && c->rx_start == c->rx_end)
		log_dbg(LOG_F_NBD, "nbd %s: closed by the client without NBD_CMD_DISC", c->peer);
	else if (c->rx_state != RX_OPT_HDR && c->rx_state != RX_NONE)
		log_warn("nbd %s: connection closed in the middle of a message", c->peer);
	conn_drain(c);
}

/* Read what the socket has (a bounded number of times, for fairness). */
static void rx_read(struct nbds_conn *c)
{
	unsigned i;

	for (i = 0; i < 8 && c->rx_state != RX_NONE && !c->closing && !c->blocked; i++) {
		struct nbds_slot *s = c->cur;
		bool direct = c->rx_state == RX_PAYLOAD && c->rx_start == c->rx_end &&
			      s->r.len - s->got >= NBDS_DIRECT_MIN;
		size_t want = direct ? s->r.len - s->got : NBDS_RX_BYTES - c->rx_end;
		ssize_t n;

		if (want == 0)
			return; /* a full buffer the requests in it cannot drain yet */
		n = read(c->fd, direct ? payload_dest(s) : c->rx + c->rx_end, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			char why[96];

			snprintf(why, sizeof(why), "receive: %s", err_str(neg_errno()));
			nbds_conn_fail(c, why);
			return;
		}
		if (n == 0) {
			rx_eof(c);
			return;
		}
		if (direct) {
			payload_got(c, (size_t)n);
		} else {
			c->rx_end += (size_t)n;
			rx_process(c);
		}
		if ((size_t)n < want)
			return;
	}
}

static void on_event(struct evloop_watch *w, uint32_t events)
{
	struct nbds_conn *c = w->opaque;

	if (events & EPOLLERR)
		nbds_conn_fail(c, "socket error");
	if (!c->hard && (events & EPOLLOUT))
		tx_flush(c);
	if (!c->hard && (events & (EPOLLIN | EPOLLHUP))) {
		if (c->rx_state != RX_NONE && !c->closing && !c->blocked)
			rx_read(c);
		else if (events & EPOLLHUP)
			nbds_conn_fail(c, "the client hung up");
	}
	if (!c->hard)
		conn_set_events(c, (c->events & EPOLLOUT) != 0);
	conn_check(c);
}

static void on_timeout(struct evloop_timer *t)
{
	struct nbds_conn *c = t->opaque;

	nbds_conn_fail(c, c->rx_state < RX_REQ_HDR ? "handshake not finished in time"
						   : "replies not taken in time at shutdown");
	conn_check(c);
}

/* ---- birth ------------------------------------------------------------- */

/* On the connection's queue thread. */
static void conn_attach(struct evloop_call *call)
{
	struct nbds_conn *c = call->opaque;
	struct nbds_qctx *qc = c->qc;
	uint8_t greeting[NBDP_GREETING_BYTES];

	c->next = qc->conns;
	if (qc->conns)
		qc->conns->prev = c;
	qc->conns = c;
	c->watch = (struct evloop_watch){
		.fd = c->fd, .events = EPOLLIN, .fn = on_event, .opaque = c
	};
	c->events = EPOLLIN;
	if (qc->stopping || evloop_watch_add(qc->loop, &c->watch) < 0) {
		c->closing = c->hard = true;
		conn_check(c);
		return;
	}
	evloop_timer_arm(qc->loop, &c->timer, NBDS_HANDSHAKE_NS, 0);
	nbdp_greeting(greeting);
	if (nbdp_buf_put(&c->hs_out, greeting, sizeof(greeting)))
		nbds_conn_fail(c, "out of memory");
	flush_schedule(c);
	conn_check(c);
}

/*
 * A connection the server accepted (counted in srv->nr_conns already): set
 * it up and send it to its queue.  On failure @fd is closed and the count
 * taken back.
 */
void nbds_conn_accepted(struct nbds_server *srv, int fd, const char *peer)
{
	struct nbds_conn *c = calloc(1, sizeof(*c));
	unsigned qi;

	if (c)
		c->rx = malloc(NBDS_RX_BYTES);
	if (!c || !c->rx) {
		log_err("nbd %s: out of memory for a new connection", peer);
		free(c);
		close(fd);
		pthread_mutex_lock(&srv->lock);
		srv->nr_conns--;
		pthread_cond_broadcast(&srv->cond);
		pthread_mutex_unlock(&srv->lock);
		return;
	}
	qi = srv->next_queue++ % srv->nr_queues;
	c->srv = srv;
	c->qc = &srv->qcs[qi];
	c->q = c->qc->q;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_lock(&srv->lock);
	c->exp = srv->exp;
	pthread_mutex_unlock(&srv->lock);
	c->rx_state = RX_CLIENT_FLAGS;
	evloop_timer_init(&c->timer, on_timeout, c);
	c->attach = (struct evloop_call){ .fn = conn_attach, .opaque = c };
	log_dbg(LOG_F_NBD, "nbd %s: connected, on queue %u", c->peer, qi);
	evloop_post(c->qc->loop, &c->attach);
}
