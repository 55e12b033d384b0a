// SPDX-License-Identifier: MIT
/*
 * The epoll event loop (see evloop.h for the contract).
 *
 * Timers live in a binary min-heap of caller-owned structs, so arming and
 * cancelling never allocate once the heap has grown to the number of
 * timers in use.  Cross-thread calls are an intrusive list under a mutex,
 * signalled through one eventfd that also serves evloop_wake().
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "evloop.h"
#include "log.h"

#define EVLOOP_MAX_EVENTS 64
#define TIMER_IDLE UINT32_MAX

struct evloop {
	int epfd;
	int wakefd;
	bool stop;
	struct evloop_timer **heap;
	unsigned heap_len;
	unsigned heap_cap;
	struct evloop_link *hooks;   /* of struct evloop_hook */
	struct evloop_link *pollers; /* of struct evloop_poller */
	uint64_t poll_max_ns;	     /* 0: no polling */
	uint64_t poll_ns;	     /* the current window, adapted up to poll_max_ns */
	unsigned wakes;		     /* evloop_wake() calls (atomic): polling stops for them */
	pthread_mutex_t post_lock;
	struct evloop_call *posted_head;
	struct evloop_call *posted_tail;
	/* The batch being dispatched: a watch deleted by a callback is
	 * scrubbed from it, since its owner may free it at once. */
	struct epoll_event *batch;
	int batch_nr;
};

/* Marks a scrubbed batch entry (NULL already means the wake-up eventfd). */
static char dead_watch_marker;

uint64_t evloop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int evloop_new(struct evloop **out)
{
	struct evloop *loop = calloc(1, sizeof(*loop));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int err;

	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		goto err_free;
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wakefd < 0)
		goto err_close_ep;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
		goto err_close_wake;
	pthread_mutex_init(&loop->post_lock, NULL);
	*out = loop;
	return 0;

err_close_wake:
	err = neg_errno();
	close(loop->wakefd);
	close(loop->epfd);
	free(loop);
	return err;
err_close_ep:
	err = neg_errno();
	close(loop->epfd);
	free(loop);
	return err;
err_free:
	err = neg_errno();
	free(loop);
	return err;
}

void evloop_free(struct evloop *loop)
{
	if (!loop)
		return;
	close(loop->wakefd);
	close(loop->epfd);
	pthread_mutex_destroy(&loop->post_lock);
	free(loop->heap);
	free(loop);
}

int evloop_watch_add(struct evloop *loop, struct evloop_watch *w)
{
	struct epoll_event ev = { .events = w->events, .data.ptr = w };

	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
		int err = neg_errno();

		log_err("evloop: cannot watch fd %d: %s", w->fd, err_str(err));
		return err;
	}
	w->loop = loop;
	w->active = true;
	return 0;
}

int evloop_watch_mod(struct evloop_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	if (!w->active)
		return -EINVAL;
	if (epoll_ctl(w->loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return neg_errno();
	w->events = events;
	return 0;
}

void evloop_watch_del(struct evloop_watch *w)
{
	if (!w->active)
		return;
	struct evloop *loop = w->loop;

	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->active = false;
	for (int i = 0; i < loop->batch_nr; i++) {
		if (loop->batch[i].data.ptr == w)
			loop->batch[i].data.ptr = &dead_watch_marker;
	}
}

/* ---- timers: a binary min-heap on due_ns ---- */

static void heap_swap(struct evloop *loop, unsigned a, unsigned b)
{
	struct evloop_timer *t = loop->heap[a];

	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_index = a;
	loop->heap[b]->heap_index = b;
}

static void heap_up(struct evloop *loop, unsigned i)
{
	while (i > 0 && loop->heap[(i - 1) / 2]->due_ns > loop->heap[i]->due_ns) {
		heap_swap(loop, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct evloop *loop, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;

		if (l < loop->heap_len && loop->heap[l]->due_ns < loop->heap[m]->due_ns)
			m = l;
		if (r < loop->heap_len && loop->heap[r]->due_ns < loop->heap[m]->due_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(loop, i, m);
		i = m;
	}
}

static void heap_remove(struct evloop *loop, unsigned i)
{
	unsigned last = --loop->heap_len;

	loop->heap[i]->heap_index = TIMER_IDLE;
	if (i == last)
		return;
	loop->heap[i] = loop->heap[last];
	loop->heap[i]->heap_index = i;
	heap_down(loop, i);
	heap_up(loop, i);
}

void evloop_timer_init(struct evloop_timer *t, evloop_timer_fn *fn, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->fn = fn;
	t->opaque = opaque;
	t->heap_index = TIMER_IDLE;
}

bool evloop_timer_armed(const struct evloop_timer *t)
{
	return t->heap_index != TIMER_IDLE;
}

void evloop_timer_cancel(struct evloop_timer *t)
{
	if (evloop_timer_armed(t))
		heap_remove(t->loop, t->heap_index);
}

void evloop_timer_arm(struct evloop *loop, struct evloop_timer *t, uint64_t delay_ns,
		      uint64_t period_ns)
{
	evloop_timer_cancel(t);
	if (loop->heap_len == loop->heap_cap) {
		unsigned cap = loop->heap_cap ? 2 * loop->heap_cap : 16;
		struct evloop_timer **heap = realloc(loop->heap, cap * sizeof(*heap));

		/* Timers are armed at set-up time, not per request; running out
		 * of memory for the heap is not recoverable for the caller. */
		if (!heap) {
			log_err("evloop: out of memory arming a timer");
			abort();
		}
		loop->heap = heap;
		loop->heap_cap = cap;
	}
	t->loop = loop;
	t->due_ns = evloop_now_ns() + delay_ns;
	t->period_ns = period_ns;
	t->heap_index = loop->heap_len;
	loop->heap[loop->heap_len++] = t;
	heap_up(loop, t->heap_index);
}

static int run_timers(struct evloop *loop)
{
	uint64_t now = evloop_now_ns();
	int n = 0;

	while (loop->heap_len > 0 && loop->heap[0]->due_ns <= now) {
		struct evloop_timer *t = loop->heap[0];

		heap_remove(loop, 0);
		if (t->period_ns)
			evloop_timer_arm(loop, t, t->period_ns, t->period_ns);
		t->fn(t);
		n++;
	}
	return n;
}

/* ---- hooks, pollers and posted calls ---- */

static struct evloop_hook *hook_of(struct evloop_link *l)
{
	return (struct evloop_hook *)((char *)l - offsetof(struct evloop_hook, link));
}

static struct evloop_poller *poller_of(struct evloop_link *l)
{
	return (struct evloop_poller *)((char *)l - offsetof(struct evloop_poller, link));
}

/* Push @l on the list at @head, unless it is on one already. */
static void link_add(struct evloop_link **head, struct evloop_link *l)
{
	if (l->active)
		return;
	l->next = *head;
	*head = l;
	l->active = true;
}

/* Take @l off the list at @head, if it is there. */
static void link_del(struct evloop_link **head, struct evloop_link *l)
{
	for (struct evloop_link **p = head; *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	l->active = false;
}

void evloop_hook_add(struct evloop *loop, struct evloop_hook *h)
{
	link_add(&loop->hooks, &h->link);
}

void evloop_hook_del(struct evloop *loop, struct evloop_hook *h)
{
	link_del(&loop->hooks, &h->link);
}

void evloop_poller_add(struct evloop *loop, struct evloop_poller *p)
{
	link_add(&loop->pollers, &p->link);
}

void evloop_poller_del(struct evloop *loop, struct evloop_poller *p)
{
	link_del(&loop->pollers, &p->link);
}

void evloop_wake(struct evloop *loop)
{
	uint64_t one = 1;

	__atomic_fetch_add(&loop->wakes, 1, __ATOMIC_RELEASE);
	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(loop->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("evloop: wake-up write failed: %m");
}

void evloop_post(struct evloop *loop, struct evloop_call *c)
{
	bool first;

	pthread_mutex_lock(&loop->post_lock);
	if (c->queued) {
		pthread_mutex_unlock(&loop->post_lock);
		return;
	}
	c->queued = true;
	c->next = NULL;
	first = loop->posted_head == NULL;
	if (loop->posted_tail)
		loop->posted_tail->next = c;
	else
		loop->posted_head = c;
	loop->posted_tail = c;
	pthread_mutex_unlock(&loop->post_lock);
	if (first)
		evloop_wake(loop);
}

static int run_posted(struct evloop *loop)
{
	struct evloop_call *c;
	uint64_t count;
	int n = 0;

	if (read(loop->wakefd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_err("evloop: wake-up read failed: %m");
	pthread_mutex_lock(&loop->post_lock);
	c = loop->posted_head;
	loop->posted_head = loop->posted_tail = NULL;
	pthread_mutex_unlock(&loop->post_lock);
	/*
	 * A call stays "queued" until just before it runs: re-posting one that
	 * is still waiting in this batch is then a no-op, instead of relinking
	 * it into the new list and cutting this batch short.
	 */
	while (c) {
		struct evloop_call *next;

		pthread_mutex_lock(&loop->post_lock);
		next = c->next;
		c->queued = false;
		pthread_mutex_unlock(&loop->post_lock);
		c->fn(c);
		c = next;
		n++;
	}
	return n;
}

void evloop_stop(struct evloop *loop)
{
	__atomic_store_n(&loop->stop, true, __ATOMIC_RELEASE);
	evloop_wake(loop);
}

/* ---- iteration ---- */

static void run_hooks(struct evloop *loop)
{
	for (struct evloop_link *l = loop->hooks, *next; l; l = next) {
		struct evloop_hook *h = hook_of(l);

		next = l->next;
		h->fn(h);
	}
}

static int64_t wait_timeout_ns(struct evloop *loop, int64_t timeout_ns)
{
	uint64_t now, due;

	if (loop->heap_len == 0)
		return timeout_ns;
	due = loop->heap[0]->due_ns;
	now = evloop_now_ns();
	if (due <= now)
		return 0;
	if (timeout_ns < 0 || due - now < (uint64_t)timeout_ns)
		return (int64_t)MIN(due - now, (uint64_t)INT64_MAX);
	return timeout_ns;
}

static int dispatch(struct evloop *loop, struct epoll_event *evs, int nr)
{
	int n = 0;

	loop->batch = evs;
	loop->batch_nr = nr;
	for (int i = 0; i < nr; i++) {
		struct evloop_watch *w = evs[i].data.ptr;

		if (!w) {
			n += run_posted(loop);
		} else if (w != (void *)&dead_watch_marker) {
			w->fn(w, evs[i].events);
			n++;
		}
	}
	loop->batch = NULL;
	loop->batch_nr = 0;
	return n;
}

/*
 * A wait with no timer, a poll, or a timeout of whole milliseconds or of
 * more than EVLOOP_FINE_WAIT_NS (where rounding up by under a millisecond
 * does not matter) goes to epoll_wait. Only a short, fine timeout needs
 * epoll_pwait2's nanoseconds; where that syscall is missing (valgrind 3.19
 * does not know it) epoll_wait with the timeout rounded up to whole
 * milliseconds keeps timers from firing early.
 */
#define EVLOOP_FINE_WAIT_NS (10 * 1000000LL)

static int wait_events(struct evloop *loop, struct epoll_event *evs, int64_t wait_ns)
{
	static bool no_pwait2;
	struct timespec ts;
	int ms;

	if (wait_ns > 0 && wait_ns < EVLOOP_FINE_WAIT_NS && wait_ns % 1000000 != 0 &&
	    !__atomic_load_n(&no_pwait2, __ATOMIC_RELAXED)) {
		ts.tv_sec = wait_ns / 1000000000;
		ts.tv_nsec = wait_ns % 1000000000;
		int nr = epoll_pwait2(loop->epfd, evs, EVLOOP_MAX_EVENTS, wait_ns < 0 ? NULL : &ts,
				      NULL);
		if (nr >= 0 || errno != ENOSYS)
			return nr;
		__atomic_store_n(&no_pwait2, true, __ATOMIC_RELAXED);
	}
	if (wait_ns < 0)
		ms = -1;
	else
		ms = (int)MIN(div_round_up_u64((uint64_t)wait_ns, 1000000), (uint64_t)INT32_MAX);
	return epoll_wait(loop->epfd, evs, EVLOOP_MAX_EVENTS, ms);
}

void evloop_set_poll_max(struct evloop *loop, uint64_t max_ns)
{
	loop->poll_max_ns = max_ns;
	loop->poll_ns = MIN(loop->poll_ns, max_ns);
}

uint64_t evloop_poll_window_ns(const struct evloop *loop)
{
	return loop->poll_ns;
}

#define EVLOOP_POLL_START_NS 4000ULL

/*
 * Spin over the pollers for up to @window_ns.  Returns how many found work,
 * or 0 once the window closed; a wake-up from another thread ends it too
 * (1: the posted call is dispatched from the wake fd at once).
 */
static int poll_for(struct evloop *loop, uint64_t window_ns)
{
	unsigned wakes = __atomic_load_n(&loop->wakes, __ATOMIC_ACQUIRE);
	uint64_t end = evloop_now_ns() + window_ns;
	int n = 0;

	do {
		for (struct evloop_link *l = loop->pollers, *next; l; l = next) {
			struct evloop_poller *p = poller_of(l);

			next = l->next;
			n += p->fn(p);
		}
		if (__atomic_load_n(&loop->wakes, __ATOMIC_ACQUIRE) != wakes)
			return n + 1;
	} while (n == 0 && evloop_now_ns() < end);
	return n;
}

/* An event came @slept_ns after the loop stopped polling: adapt the window. */
static void poll_adapt(struct evloop *loop, uint64_t slept_ns)
{
	if (slept_ns <= loop->poll_max_ns) {
		/* a longer window would have caught it */
		if (slept_ns > loop->poll_ns)
			loop->poll_ns = MIN(MAX(loop->poll_ns * 2, EVLOOP_POLL_START_NS),
					    loop->poll_max_ns);
	} else if (loop->poll_ns) {
		/* too late for any window: spinning is waste */
		loop->poll_ns /= 2;
		if (loop->poll_ns < EVLOOP_POLL_START_NS)
			loop->poll_ns = 0;
	}
}

int evloop_run_once(struct evloop *loop, int64_t timeout_ns)
{
	struct epoll_event evs[EVLOOP_MAX_EVENTS];
	bool polling = loop->poll_max_ns && loop->pollers;
	int64_t wait_ns;
	uint64_t t0 = 0;
	int nr, polled = 0;

	run_hooks(loop);
	wait_ns = wait_timeout_ns(loop, timeout_ns);
	if (polling && wait_ns != 0 && loop->poll_ns) {
		uint64_t window =
			wait_ns < 0 ? loop->poll_ns : MIN(loop->poll_ns, (uint64_t)wait_ns);

		polled = poll_for(loop, window);
		if (polled)
			wait_ns = 0; /* found work: dispatch what else is ready, then go round */
		else if (wait_ns > 0)
			wait_ns = wait_ns > (int64_t)window ? wait_ns - (int64_t)window : 0;
	}
	if (polling && wait_ns != 0)
		t0 = evloop_now_ns();
	nr = wait_events(loop, evs, wait_ns);
	if (nr < 0) {
		if (errno == EINTR)
			return polled;
		return neg_errno();
	}
	if (t0)
		poll_adapt(loop, evloop_now_ns() - t0 + loop->poll_ns);
	return polled + dispatch(loop, evs, nr) + run_timers(loop);
}

int evloop_run(struct evloop *loop)
{
	while (!__atomic_load_n(&loop->stop, __ATOMIC_ACQUIRE)) {
		int r = evloop_run_once(loop, -1);

		if (r < 0)
			return r;
	}
	loop->stop = false;
	return 0;
}
