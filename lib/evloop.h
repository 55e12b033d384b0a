/* SPDX-License-Identifier: MIT */
/*
 * The epoll event loop that every qtap thread runs.
 *
 * One loop belongs to one thread: fd watches, timers and hooks are added,
 * changed and run only on that thread.  Other threads talk to a loop only
 * through evloop_wake() and evloop_post(), which are thread-safe.
 *
 * An iteration: run the "prepare" hooks (this is where the aio layer submits
 * everything queued during the previous iteration, so submissions batch per
 * iteration), wait in epoll_pwait2 until an fd is ready, the nearest timer is
 * due, or a wake-up arrives, then dispatch ready fds, due timers and posted
 * calls.  Callbacks may add or remove watches and timers, including their
 * own.
 *
 * Watches and timers are structs the caller embeds and owns (no allocation
 * in the loop), and must stay valid until removed.
 */
#ifndef QTAP_EVLOOP_H
#define QTAP_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct evloop;
struct evloop_watch;
struct evloop_timer;
struct evloop_call;
struct evloop_hook;

typedef void evloop_fd_fn(struct evloop_watch *w, uint32_t events);
typedef void evloop_timer_fn(struct evloop_timer *t);
typedef void evloop_call_fn(struct evloop_call *c);
typedef void evloop_hook_fn(struct evloop_hook *h);

/* An fd watch.  @events are EPOLLIN/EPOLLOUT/...; level-triggered. */
struct evloop_watch {
	int fd;
	uint32_t events;
	evloop_fd_fn *fn;
	void *opaque;
	/* private */
	struct evloop *loop;
	bool active;
};

/* A one-shot or periodic timer on CLOCK_MONOTONIC. */
struct evloop_timer {
	evloop_timer_fn *fn;
	void *opaque;
	/* private */
	struct evloop *loop;
	uint64_t due_ns;
	uint64_t period_ns;
	unsigned heap_index; /* position in the loop's heap, or UINT32_MAX when idle */
};

/* A call posted from any thread to run once on the loop's thread. */
struct evloop_call {
	evloop_call_fn *fn;
	void *opaque;
	/* private */
	struct evloop_call *next;
	bool queued;
};

/* private: an entry of a loop's list of hooks or of pollers */
struct evloop_link {
	struct evloop_link *next;
	bool active;
};

/* A hook run at the start of every iteration, before waiting. */
struct evloop_hook {
	evloop_hook_fn *fn;
	void *opaque;
	/* private */
	struct evloop_link link;
};

/*
 * A poller, for adaptive polling (evloop_set_poll_max): before sleeping,
 * the loop calls every poller in turn for a while; @fn looks for work
 * without a system call (a shared ring's producer index, an io_uring
 * completion queue), handles what it finds as its fd's callback would, and
 * returns true if there was any.
 */
struct evloop_poller;
typedef bool evloop_poll_fn(struct evloop_poller *p);

struct evloop_poller {
	evloop_poll_fn *fn;
	void *opaque;
	/* private */
	struct evloop_link link;
};

/* evloop_new - create a loop; returns 0 or -errno, *loop set on success. */
int evloop_new(struct evloop **loop);

/* evloop_free - destroy a loop; every watch and timer must be gone.  NULL ok. */
void evloop_free(struct evloop *loop);

/*
 * evloop_watch_add - start watching @w->fd for @w->events and call @w->fn.
 * Returns 0 or -errno (for example -EPERM for a regular file).
 */
int evloop_watch_add(struct evloop *loop, struct evloop_watch *w);

/* evloop_watch_mod - change the events of an active watch.  0 or -errno. */
int evloop_watch_mod(struct evloop_watch *w, uint32_t events);

/* evloop_watch_del - stop watching; idempotent.  Callbacks pending in the
 * current iteration for @w are not delivered after this returns. */
void evloop_watch_del(struct evloop_watch *w);

/*
 * evloop_timer_arm - (re)arm @t to fire after @delay_ns, then every
 * @period_ns if non-zero.  Re-arming an armed timer moves it.
 */
void evloop_timer_arm(struct evloop *loop, struct evloop_timer *t, uint64_t delay_ns,
		      uint64_t period_ns);

/* evloop_timer_cancel - disarm; idempotent. */
void evloop_timer_cancel(struct evloop_timer *t);

/* evloop_timer_armed - is @t waiting to fire? */
bool evloop_timer_armed(const struct evloop_timer *t);

/* evloop_timer_init - mark a fresh timer idle; call before first use. */
void evloop_timer_init(struct evloop_timer *t, evloop_timer_fn *fn, void *opaque);

/* evloop_hook_add / _del - run @h->fn at the start of every iteration. */
void evloop_hook_add(struct evloop *loop, struct evloop_hook *h);
void evloop_hook_del(struct evloop *loop, struct evloop_hook *h);

/* evloop_poller_add / _del - poll @p before sleeping (while polling is on). */
void evloop_poller_add(struct evloop *loop, struct evloop_poller *p);
void evloop_poller_del(struct evloop *loop, struct evloop_poller *p);

/*
 * evloop_set_poll_max - poll for up to @max_ns before sleeping (0, the
 * default: never).  The window adapts as QEMU's poll-max-ns does: it grows
 * while events arrive soon after the loop went to sleep and shrinks while
 * they come later than @max_ns, so an idle or slow queue stops spinning.
 */
void evloop_set_poll_max(struct evloop *loop, uint64_t max_ns);

/* evloop_poll_window_ns - how long the loop polls now (0: it sleeps at once). */
uint64_t evloop_poll_window_ns(const struct evloop *loop);

/*
 * evloop_post - from any thread, run @c->fn once on the loop's thread.
 * Posting a call that is already queued is a no-op.  Thread-safe.
 */
void evloop_post(struct evloop *loop, struct evloop_call *c);

/* evloop_wake - from any thread, make a blocked evloop_run_once() return. */
void evloop_wake(struct evloop *loop);

/*
 * evloop_run_once - one iteration, waiting at most @timeout_ns (-1: until
 * something happens, 0: poll).  Returns the number of callbacks dispatched
 * (watches, timers, posted calls), or -errno.
 */
int evloop_run_once(struct evloop *loop, int64_t timeout_ns);

/* evloop_run - iterate until evloop_stop().  Returns 0 or -errno. */
int evloop_run(struct evloop *loop);

/* evloop_stop - make evloop_run() return after this iteration.  Thread-safe. */
void evloop_stop(struct evloop *loop);

/* evloop_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t evloop_now_ns(void);

#endif
