// SPDX-License-Identifier: MIT
/*
 * The event loop: timers fire in order and on time, periodic timers repeat,
 * cancelled ones never fire; many fds are dispatched; a watch removed by
 * another watch's callback in the same batch is not called; calls posted
 * from other threads run on the loop's thread; hooks run every iteration;
 * adaptive polling takes work that arrives soon without sleeping, and stops
 * spinning once nothing comes within the window's maximum.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "evloop.h"

#define MS 1000000ull

struct timer_log {
	int order[8];
	int n;
};

struct tagged_timer {
	struct evloop_timer t;
	struct timer_log *log;
	int tag;
};

static void log_fire(struct evloop_timer *t)
{
	struct tagged_timer *tt = t->opaque;

	if (tt->log->n < 8)
		tt->log->order[tt->log->n++] = tt->tag;
}

static struct evloop *new_loop(void)
{
	struct evloop *loop = NULL;

	assert_int_equal(evloop_new(&loop), 0);
	return loop;
}

static void run_until(struct evloop *loop, int *counter, int want, uint64_t limit_ns)
{
	uint64_t deadline = evloop_now_ns() + limit_ns;

	while (*counter < want && evloop_now_ns() < deadline)
		assert_true(evloop_run_once(loop, 10 * (int64_t)MS) >= 0);
}

static void test_timers_fire_in_due_order(void **state)
{
	struct evloop *loop = new_loop();
	struct timer_log log = { 0 };
	struct tagged_timer tt[4];
	const uint64_t delays[4] = { 40 * MS, 10 * MS, 30 * MS, 20 * MS };
	uint64_t start = evloop_now_ns();

	for (int i = 0; i < 4; i++) {
		tt[i].log = &log;
		tt[i].tag = i;
		evloop_timer_init(&tt[i].t, log_fire, &tt[i]);
		evloop_timer_arm(loop, &tt[i].t, delays[i], 0);
	}
	evloop_timer_cancel(&tt[2].t);
	assert_false(evloop_timer_armed(&tt[2].t));
	run_until(loop, &log.n, 3, 2000 * MS);
	assert_int_equal(log.n, 3);
	assert_int_equal(log.order[0], 1);
	assert_int_equal(log.order[1], 3);
	assert_int_equal(log.order[2], 0);
	/* Not early: the last timer was due after 40 ms. */
	assert_true(evloop_now_ns() - start >= 40 * MS);
	assert_int_equal(evloop_run_once(loop, 0), 0); /* the cancelled one stays quiet */
	evloop_free(loop);
}

static void count_fire(struct evloop_timer *t)
{
	(*(int *)t->opaque)++;
}

static void test_periodic_timer_repeats_until_cancelled(void **state)
{
	struct evloop *loop = new_loop();
	struct evloop_timer t;
	int fired = 0;

	evloop_timer_init(&t, count_fire, &fired);
	evloop_timer_arm(loop, &t, 1 * MS, 2 * MS);
	run_until(loop, &fired, 5, 2000 * MS);
	assert_int_equal(fired, 5);
	assert_true(evloop_timer_armed(&t));
	evloop_timer_cancel(&t);
	assert_int_equal(evloop_run_once(loop, 5 * (int64_t)MS), 0);
	assert_int_equal(fired, 5);
	evloop_free(loop);
}

#define NR_PIPES 200

struct pipe_watch {
	struct evloop_watch w;
	int fds[2];
	int *hits;
};

static void drain_pipe(struct evloop_watch *w, uint32_t events)
{
	struct pipe_watch *pw = w->opaque;
	char c;

	assert_true(events & EPOLLIN);
	assert_int_equal(read(pw->fds[0], &c, 1), 1);
	(*pw->hits)++;
}

static void test_many_fds_each_dispatched_once(void **state)
{
	struct evloop *loop = new_loop();
	static struct pipe_watch pw[NR_PIPES];
	int hits = 0;

	for (int i = 0; i < NR_PIPES; i++) {
		assert_int_equal(pipe(pw[i].fds), 0);
		pw[i].hits = &hits;
		pw[i].w = (struct evloop_watch){
			.fd = pw[i].fds[0], .events = EPOLLIN, .fn = drain_pipe, .opaque = &pw[i]
		};
		assert_int_equal(evloop_watch_add(loop, &pw[i].w), 0);
		assert_int_equal(write(pw[i].fds[1], "x", 1), 1);
	}
	run_until(loop, &hits, NR_PIPES, 2000 * MS);
	assert_int_equal(hits, NR_PIPES);
	assert_int_equal(evloop_run_once(loop, 0), 0); /* all drained, nothing more */
	for (int i = 0; i < NR_PIPES; i++) {
		evloop_watch_del(&pw[i].w);
		close(pw[i].fds[0]);
		close(pw[i].fds[1]);
	}
	evloop_free(loop);
}

struct killer {
	struct evloop_watch w;
	int fds[2];
	struct killer *victim;
	int calls;
};

static void kill_other(struct evloop_watch *w, uint32_t events)
{
	struct killer *k = w->opaque;
	char c;

	assert_int_equal(read(k->fds[0], &c, 1), 1);
	k->calls++;
	/* Whichever runs first removes the other, which must not run. */
	evloop_watch_del(&k->victim->w);
}

static void test_watch_deleted_in_batch_is_not_called(void **state)
{
	struct evloop *loop = new_loop();
	struct killer a = { 0 }, b = { 0 };
	struct killer *ks[2] = { &a, &b };

	a.victim = &b;
	b.victim = &a;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pipe(ks[i]->fds), 0);
		ks[i]->w = (struct evloop_watch){
			.fd = ks[i]->fds[0], .events = EPOLLIN, .fn = kill_other, .opaque = ks[i]
		};
		assert_int_equal(evloop_watch_add(loop, &ks[i]->w), 0);
		assert_int_equal(write(ks[i]->fds[1], "x", 1), 1);
	}
	assert_int_equal(evloop_run_once(loop, 1000 * (int64_t)MS), 1);
	assert_int_equal(a.calls + b.calls, 1);
	for (int i = 0; i < 2; i++) {
		evloop_watch_del(&ks[i]->w);
		close(ks[i]->fds[0]);
		close(ks[i]->fds[1]);
	}
	evloop_free(loop);
}

struct poster {
	struct evloop *loop;
	struct evloop_call calls[100];
	pthread_t loop_thread;
	int ran;
	int wrong_thread;
};

static void posted_fn(struct evloop_call *c)
{
	struct poster *p = c->opaque;

	if (!pthread_equal(pthread_self(), p->loop_thread))
		p->wrong_thread++;
	p->ran++;
}

static void *post_from_thread(void *arg)
{
	struct poster *p = arg;

	for (int i = 0; i < 100; i++)
		evloop_post(p->loop, &p->calls[i]);
	return NULL;
}

static void test_posts_from_other_threads_run_on_loop(void **state)
{
	struct poster p = { .loop = new_loop(), .loop_thread = pthread_self() };
	pthread_t th;

	for (int i = 0; i < 100; i++)
		p.calls[i] = (struct evloop_call){ .fn = posted_fn, .opaque = &p };
	assert_int_equal(pthread_create(&th, NULL, post_from_thread, &p), 0);
	run_until(p.loop, &p.ran, 100, 5000 * MS);
	pthread_join(th, NULL);
	evloop_run_once(p.loop, 0);
	assert_int_equal(p.ran, 100);
	assert_int_equal(p.wrong_thread, 0);
	evloop_free(p.loop);
}

struct repost {
	struct evloop *loop;
	struct evloop_call calls[3];
	int runs[3];
};

static void repost_fn(struct evloop_call *c)
{
	struct repost *r = c->opaque;
	int i = (int)(c - r->calls);

	r->runs[i]++;
	/* The first call re-posts the two still waiting in this batch. */
	if (i == 0) {
		evloop_post(r->loop, &r->calls[1]);
		evloop_post(r->loop, &r->calls[2]);
	}
}

static void test_repost_of_waiting_call_keeps_batch(void **state)
{
	struct repost r = { .loop = new_loop() };

	for (int i = 0; i < 3; i++) {
		r.calls[i] = (struct evloop_call){ .fn = repost_fn, .opaque = &r };
		evloop_post(r.loop, &r.calls[i]);
	}
	evloop_run_once(r.loop, 1000 * (int64_t)MS);
	for (int i = 0; i < 3; i++)
		assert_int_equal(r.runs[i], 1);
	assert_int_equal(evloop_run_once(r.loop, 0), 0); /* nothing was left queued */
	evloop_free(r.loop);
}

static void *wake_then_stop(void *arg)
{
	struct evloop *loop = arg;

	evloop_wake(loop);
	evloop_stop(loop);
	return NULL;
}

static void test_stop_from_other_thread_ends_run(void **state)
{
	struct evloop *loop = new_loop();
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, wake_then_stop, loop), 0);
	/* Blocks with no fds and no timers until the other thread stops it. */
	assert_int_equal(evloop_run(loop), 0);
	pthread_join(th, NULL);
	evloop_free(loop);
}

static void hook_fn(struct evloop_hook *h)
{
	(*(int *)h->opaque)++;
}

static void test_hooks_run_each_iteration(void **state)
{
	struct evloop *loop = new_loop();
	int runs = 0;
	struct evloop_hook h = { .fn = hook_fn, .opaque = &runs };

	evloop_hook_add(loop, &h);
	evloop_hook_add(loop, &h); /* idempotent */
	for (int i = 0; i < 3; i++)
		evloop_run_once(loop, 0);
	assert_int_equal(runs, 3);
	evloop_hook_del(loop, &h);
	evloop_run_once(loop, 0);
	assert_int_equal(runs, 3);
	evloop_free(loop);
}

/* A producer that publishes items every 100 us and kicks a pipe for each. */
struct polled {
	struct evloop *loop;
	int pipe[2];
	unsigned pending; /* atomic: published, not yet taken */
	int taken_by_fd, taken_by_poll, produced;
};

static void *produce(void *arg)
{
	struct polled *p = arg;
	struct timespec gap = { .tv_nsec = 100000 };
	char c = 'k';

	for (int i = 0; i < 300; i++) {
		nanosleep(&gap, NULL);
		__atomic_fetch_add(&p->pending, 1, __ATOMIC_RELEASE);
		assert_int_equal(write(p->pipe[1], &c, 1), 1);
	}
	return NULL;
}

static int take(struct polled *p)
{
	return (int)__atomic_exchange_n(&p->pending, 0, __ATOMIC_ACQ_REL);
}

static void kicked(struct evloop_watch *w, uint32_t events)
{
	struct polled *p = w->opaque;
	char buf[512];

	(void)events;
	assert_true(read(p->pipe[0], buf, sizeof(buf)) > 0);
	p->taken_by_fd += take(p);
}

static bool poll_fn(struct evloop_poller *pl)
{
	struct polled *p = pl->opaque;
	int n = take(p);

	p->taken_by_poll += n;
	return n > 0;
}

static void test_adaptive_polling_grows_and_shrinks(void **state)
{
	struct polled p = { .loop = new_loop() };
	struct evloop_watch w = { .events = EPOLLIN, .fn = kicked, .opaque = &p };
	struct evloop_poller pl = { .fn = poll_fn, .opaque = &p };
	pthread_t th;
	int idle;

	assert_int_equal(pipe(p.pipe), 0);
	w.fd = p.pipe[0];
	assert_int_equal(evloop_watch_add(p.loop, &w), 0);
	evloop_poller_add(p.loop, &pl);
	evloop_set_poll_max(p.loop, 20 * MS);
	assert_int_equal(evloop_poll_window_ns(p.loop), 0);
	assert_int_equal(pthread_create(&th, NULL, produce, &p), 0);
	while (p.taken_by_fd + p.taken_by_poll < 300)
		assert_true(evloop_run_once(p.loop, 1000 * (int64_t)MS) >= 0);
	pthread_join(th, NULL);
	/* kicks every 100 us, well inside 20 ms: the window opened and caught some */
	assert_true(p.taken_by_poll > 0);
	assert_true(evloop_poll_window_ns(p.loop) > 0);
	/* then nothing for longer than the maximum: the window closes */
	for (idle = 0; idle < 40 && evloop_poll_window_ns(p.loop); idle++)
		assert_true(evloop_run_once(p.loop, 30 * (int64_t)MS) >= 0);
	assert_int_equal(evloop_poll_window_ns(p.loop), 0);
	evloop_poller_del(p.loop, &pl);
	evloop_watch_del(&w);
	close(p.pipe[0]);
	close(p.pipe[1]);
	evloop_free(p.loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_fire_in_due_order),
		cmocka_unit_test(test_periodic_timer_repeats_until_cancelled),
		cmocka_unit_test(test_many_fds_each_dispatched_once),
		cmocka_unit_test(test_watch_deleted_in_batch_is_not_called),
		cmocka_unit_test(test_posts_from_other_threads_run_on_loop),
		cmocka_unit_test(test_repost_of_waiting_call_keeps_batch),
		cmocka_unit_test(test_stop_from_other_thread_ends_run),
		cmocka_unit_test(test_hooks_run_each_iteration),
		cmocka_unit_test(test_adaptive_polling_grows_and_shrinks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
